"""The terminal summary: one row per run, latencies in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence

from hopbench.results import RunResult

COLUMNS = (
    ("topology", "<"),
    ("mode", "<"),
    ("pattern", "<"),
    ("rate", ">"),
    ("achieved", ">"),
    ("sent", ">"),
    ("done", ">"),
    ("lost", ">"),
    ("dup", ">"),
    ("err", ">"),
    ("p50 ms", ">"),
    ("p90 ms", ">"),
    ("p99 ms", ">"),
    ("p99.9 ms", ">"),
    ("max ms", ">"),
    ("svc p50", ">"),
    ("svc p99", ">"),
)


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"


def _pattern(run: RunResult) -> str:
    patterns = {e.pattern for e in run.edges}
    return patterns.pop() if len(patterns) == 1 else "mixed"


def row(run: RunResult) -> list[str]:
    lat, svc = run.latency_us, run.service_time_us
    return [
        run.topology,
        run.mode,
        _pattern(run),
        f"C={run.load['concurrency']}" if run.load.get("concurrency") else f"{run.target_rate:g}",
        f"{run.achieved_rate:.0f}" + ("!" if run.generator_limited else ""),
        str(run.sent),
        str(run.completed),
        str(run.lost),
        str(run.duplicated),
        str(run.errors),
        _ms(lat.p50),
        _ms(lat.p90),
        _ms(lat.p99),
        _ms(lat.p999),
        _ms(lat.max),
        _ms(svc.p50),
        _ms(svc.p99),
    ]


def render(runs: Sequence[RunResult]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [row(r) for r in runs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for r in rows:
        cells = [
            cell.ljust(w) if align == "<" else cell.rjust(w)
            for cell, w, (_, align) in zip(r, widths, COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * w for w in widths))
    footer = [
        "latency = completion - intended send (coordinated-omission-correct); "
        "svc = completion - actual send.",
        "request-reply rows are round trips to the load generator; publish-subscribe and "
        "fire-and-forget rows are one-way, load generator to sink.",
    ]
    if any(r.generator_limited for r in runs):
        footer.append(
            "! the load generator, not the system, was the limit in this run (see notes)."
        )
    return "\n".join([*lines, "", *footer])
