"""The terminal summary: one row per run, latencies in milliseconds; then, per route,
where the mean latency goes, hop by hop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hopbench.results.cells import variant_label
from hopbench.results.numbers import ms, number
from hopbench.results.schema import HopShare, RunResult
from hopbench.results.selfcheck import flag, flag_legend

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
    return ms(us)


def _mode(run: RunResult) -> str:
    """The variant (the mode, or a suite's name for it) and the broker behind it."""
    return variant_label(run) + (" (probe)" if run.probe else "")


def _pattern(run: RunResult) -> str:
    patterns = {e.pattern for e in run.edges}
    return patterns.pop() if len(patterns) == 1 else "mixed"


def row(run: RunResult) -> list[str]:
    lat, svc = run.latency_us, run.service_time_us
    return [
        run.topology,
        _mode(run),
        _pattern(run),
        run.load_label,
        number(run.achieved_rate) + flag(run),
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
    routed = [r for r in runs if len(r.routes) > 1]
    if routed:
        rows = [
            [
                f"{r.topology} {_mode(r)}",
                route.route,
                str(route.completed),
                str(route.lost),
                _ms(route.latency_us.p50),
                _ms(route.latency_us.p99),
            ]
            for r in routed
            for route in r.routes
        ]
        lines += ["", "per route (a message completes once on each):"]
        lines.append(_grid(["run", "route", "done", "lost", "p50 ms", "p99 ms"], rows))
    failed = [r for r in runs if r.failed]
    if failed:
        lines += ["", "FAILED (never ranked):"]
        lines += [f"  {r.topology} {_mode(r)} {r.load_label}: {r.failure}" for r in failed]
    footer = [
        "latency = completion - intended send (coordinated-omission-correct); "
        "svc = completion - actual send.",
        "a route ending in (reply) is a round trip back to the load generator; any other "
        "route is one-way, load generator to the service that completes it.",
    ]
    footer += flag_legend(runs)
    breakdown = render_breakdown(runs)
    return "\n".join([*lines, "", *footer, *(["", breakdown] if breakdown else [])])


BREAKDOWN_HEADER = ["  hop", "transit", "wait", "work", "rest", "on path"]


def render_breakdown(runs: Sequence[RunResult]) -> str:
    """Per run and route: the mean latency split along the critical path, ms per
    completion, within 100 columns (each part's p50 and p99 are in the report)."""
    blocks = []
    for run in runs:
        for route in run.routes:
            found = route.breakdown
            if found is None:
                continue
            share = found.residual_us / found.latency_mean_us if found.latency_mean_us else 0.0
            rows = [_share_row(h) for h in found.hops if h.on_path > 0]
            blocks += [
                f"{run.topology} {_mode(run)} {run.load_label}, {route.route}"[:100],
                f"  mean {_ms(found.latency_mean_us)} ms = send lag {_ms(found.send_lag_us)} "
                f"+ the hops below; residual {ms(found.residual_us, True)} ms "
                f"({number(share * 100, True)} %)",
                _grid(BREAKDOWN_HEADER, rows, left=1),
            ]
    if not blocks:
        return ""
    return "\n".join(["where the time goes: mean ms per completion along each route", *blocks])


def _share_row(hop: HopShare) -> list[str]:
    parts = (hop.transit_us, hop.wait_us, hop.work_us, hop.rest_us)
    return [f"  {hop.service}"[:40], *(_ms(us) for us in parts), f"{hop.on_path:.0%}"]


def _grid(header: list[str], rows: list[list[str]], left: int = 2) -> str:
    """Columns padded to their widest cell; the first `left` aligned left."""
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_cells(cells: Sequence[dict[str, Any]]) -> str:
    """Repeats: the median of each metric, with its range across the repeats."""

    def spread(metric: dict[str, float], scale: float = 1000) -> str:
        low, high = number(metric["min"] / scale), number(metric["max"] / scale)
        return f"{number(metric['median'] / scale)} [{low}-{high}]"

    rows = [
        [
            c["cell"],
            str(c["repeats"]),
            spread(c["metrics"]["achieved_rate"], 1),
            spread(c["metrics"]["p50_us"]),
            spread(c["metrics"]["p99_us"]),
            spread(c["metrics"]["max_us"]),
        ]
        for c in cells
    ]
    header = ["cell", "runs", "achieved/s", "p50 ms", "p99 ms", "max ms"]
    return "median [min-max] over repeats\n" + _grid(header, rows)


def render_knees(knees: Sequence[dict[str, Any]]) -> str:
    rows = []
    for k in knees:
        best = k["max_sustainable_rate"]
        slo = f"p99 <= {k['slo_p99_ms']:g} ms" if k["slo_p99_ms"] is not None else "keeps up"
        rows.append([f"{k['topology']} {k['mode']}", slo,
                     f"{best:g}/s" if best else "none found", str(len(k["evidence"]))])  # fmt: skip
    return "max sustainable rate\n" + _grid(["flow", "criterion", "rate", "probes"], rows)
