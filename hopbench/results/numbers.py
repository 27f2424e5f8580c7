"""One way to write a number, for the terminal and the report alike: three
significant figures, whole numbers from 1,000 up with a thousands separator
(0.0123, 1.57, 16.3, 159, 1,183)."""

from __future__ import annotations

import math

SIGNIFICANT = 3
MAX_DECIMALS = 6  # below 1 µs in ms: shown as 0


def number(value: float, signed: bool = False) -> str:
    """``value`` to three significant figures; ``signed``: with its + or − sign."""
    sign = "+" if signed and value >= 0 else ""
    if not math.isfinite(value):
        return f"{sign}{value}"
    # round first, so that 99.96 becomes 100 (three figures), not 100.0
    rounded = float(f"{value:.{SIGNIFICANT}g}")
    if abs(rounded) >= 1000 or rounded == 0:
        return f"{sign}{rounded:,.0f}"
    decimals = SIGNIFICANT - 1 - math.floor(math.log10(abs(rounded)))
    return f"{sign}{rounded:.{min(max(decimals, 0), MAX_DECIMALS)}f}"


def ms(us: float, signed: bool = False) -> str:
    """Microseconds as milliseconds."""
    return number(us / 1000, signed)
