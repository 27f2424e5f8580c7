"""HdrHistograms as every recorder makes them: µs, 1 µs to 1 hour, 3 significant figures."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything longer is counted as out of range
SIGNIFICANT_FIGURES = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record(histogram: HdrHistogram, value_us: int) -> bool:
    """Record one value; False when HdrHistogram refused it (out of range)."""
    return bool(histogram.record_value(max(value_us, LOWEST_US)))
