"""The caches' table the terminal prints: per run and service, how often its cache hit,
how stale what it served was, and what a hit and a miss cost."""

from __future__ import annotations

import textwrap

from hopbench.results.cells import variant_label
from hopbench.results.numbers import ms
from hopbench.results.schema import CacheResult, Percentiles, RunResult

HEADER = ("run", "service", "store", "hit %", "stale %", "hit ms", "miss ms", "age ms")
NOTE = (
    "caches (measured window; hit and miss ms: p50/p99 of the lookup, a miss with its work; "
    "age ms: p50/p99/max of the values hits served; stale: a hit whose source had changed)"
)


def _ms_of(p: Percentiles, *names: str) -> str:
    if p.count == 0:
        return "-"
    return "/".join(ms(getattr(p, name)) for name in names)


def _row(run: RunResult, cache: CacheResult) -> tuple[str, ...]:
    return (
        f"{variant_label(run)} @ {run.load_label}",
        cache.service,
        cache.store,
        f"{cache.hit_ratio * 100:.1f}",
        f"{cache.stale_ratio * 100:.1f}",
        _ms_of(cache.hit_us, "p50", "p99"),
        _ms_of(cache.miss_us, "p50", "p99"),
        _ms_of(cache.age_us, "p50", "p99", "max"),
    )


def render_caches(runs: list[RunResult]) -> str:
    """One row per run and service with a cache; "" when no run had one."""
    rows = [_row(run, cache) for run in runs for cache in run.caches]
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in (HEADER, *rows)) for i in range(len(HEADER))]
    widths[0] = min(widths[0], 28)

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0] if len(cells[0]) <= widths[0] else cells[0][: widths[0] - 1] + "…"
        rest = [c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(
            zip(cells[1:], widths[1:], strict=True), start=1)]  # fmt: skip
        return "  " + "  ".join([first.ljust(widths[0]), *rest]).rstrip()

    dashes = tuple("-" * w for w in widths)
    note = textwrap.wrap(NOTE, 100, subsequent_indent="  ")
    return "\n".join([*note, line(HEADER), line(dashes), *(line(r) for r in rows)])
