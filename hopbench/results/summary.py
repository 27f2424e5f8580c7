"""The summary the terminal and the report share: one row per cell and route, the
median over its repeats, ranked only against rows of its own group
(hopbench.results.cells). A failed row is shown with its cause and never ranked; a
``--find-max`` search is one row per searched cell (its knee), its probes are
evidence, not variants.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hopbench.results.cells import dimensions, group_of, variant_label, varying
from hopbench.results.numbers import number
from hopbench.results.schema import Results, RunResult

FIND_MAX = "find-max"


def _route_latency(route: str, pick: str) -> Callable[[RunResult], float | None]:
    def get(run: RunResult) -> float | None:
        found = next((r for r in run.routes if r.route == route), None)
        return getattr(found.latency_us, pick) / 1000 if found else None

    return get


@dataclass
class SummaryRow:
    variant: str  # with the brokers that produced it
    measures: str  # "round trip", "one-way to worker"
    route: str
    load: str
    group: tuple[str, ...]
    shown: dict[str, str] = field(default_factory=dict)  # the varying dimensions' values
    runs: list[RunResult] = field(default_factory=list)
    max_sustainable: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)  # a knee's probes: their run ids

    @property
    def failure(self) -> str | None:
        """A row fails when any of its runs did: failures never win."""
        failed = [r for r in self.runs if r.failed]
        if not failed:
            return None
        share = f"{len(failed)} of {len(self.runs)} runs failed; " if len(self.runs) > 1 else ""
        return f"{share}{failed[0].failure}"

    def values(self, metric: str) -> list[float]:
        get = metric_getter(metric, self.route)
        found = [get(r) for r in self.runs]
        return [v for v in found if v is not None]

    def median(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.median(values) if values and len(values) == len(self.runs) else None

    def spread(self, metric: str) -> tuple[float, float]:
        values = self.values(metric)
        return min(values), max(values)


METRICS = ("p50 ms", "p99 ms", "done/s", "CPU ms/1000")
LOWER_IS_BETTER = {"p50 ms", "p99 ms", "CPU ms/1000"}


def metric_getter(metric: str, route: str) -> Callable[[RunResult], float | None]:
    if metric == "p50 ms":
        return _route_latency(route, "p50")
    if metric == "p99 ms":
        return _route_latency(route, "p99")
    if metric == "done/s":
        return lambda r: r.completion_rate
    return lambda r: r.cpu_ms_per_1000


def summary(results: Results) -> list[SummaryRow]:
    """Rows for the measured runs, then one per searched cell; each group ranked."""
    runs = [r for r in results.runs if not r.probe]
    shown_dims = varying(results.runs)
    rows: dict[tuple[Any, ...], SummaryRow] = {}
    for run in runs:
        key = tuple(sorted(dimensions(run).items()))
        for route in run.routes:
            row = rows.get((key, route.route))
            if row is None:
                row = rows[key, route.route] = _row(run, route.route, route.measures, shown_dims)
            row.runs.append(run)
    measured = list(rows.values())
    _rank(measured, METRICS)
    knees = knee_rows(results, shown_dims)
    _rank(knees, ("max sustainable",))
    return measured + knees


def _row(run: RunResult, route: str, measures: str, shown_dims: list[str]) -> SummaryRow:
    dims = dimensions(run)
    return SummaryRow(
        variant=variant_label(run),
        measures=measures or route,
        route=route,
        load=dims["load"],
        group=group_of(run, route),
        shown={d: dims[d] for d in shown_dims},
    )


def knee_rows(results: Results, shown_dims: list[str]) -> list[SummaryRow]:
    """One row per route of each search, the probe at the knee as its numbers."""
    by_id = {r.run_id: r for r in results.runs}
    rows = []
    for knee in results.max_sustainable:
        probes = [by_id[p["run_id"]] for p in knee.get("evidence", []) if p["run_id"] in by_id]
        if not probes:
            continue
        best = knee.get("max_sustainable_rate")
        at_knee = [p for p in probes if p.target_rate == best and not p.failed]
        shown = at_knee[:1] or probes[:1]
        for route in probes[0].routes:
            row = _row(probes[0], route.route, route.measures, shown_dims)
            row.load, row.max_sustainable = FIND_MAX, best
            row.group = (FIND_MAX, *group_of(probes[0], route.route, frozenset({"load"})))
            row.runs = shown if at_knee else []
            row.evidence = [p.run_id for p in probes]
            rows.append(row)
    return rows


def _rank(rows: list[SummaryRow], metrics: tuple[str, ...]) -> None:
    """#1 is the best in its group; a failed row, or one without the value, is unranked."""
    groups: dict[tuple[str, ...], list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.failure is None:
            groups[row.group].append(row)
    for group in groups.values():
        for metric in metrics:
            scored = [(value, row) for row in group if (value := _score(row, metric)) is not None]
            scored.sort(key=lambda pair: pair[0], reverse=metric not in LOWER_IS_BETTER)
            for rank, (_, row) in enumerate(scored, start=1):
                row.ranks[metric] = rank


def _score(row: SummaryRow, metric: str) -> float | None:
    if metric == "max sustainable":
        return row.max_sustainable
    return row.median(metric)


def _number(value: float) -> str:
    return number(value)


def metric_cell(row: SummaryRow, metric: str) -> str:
    if not row.runs:
        return "-"
    median = row.median(metric)
    if median is None:
        return "n/m"  # not measured: a process's CPU could not be read
    text = _number(median)
    if len(row.runs) > 1:
        low, high = row.spread(metric)
        text += f" [{_number(low)}-{_number(high)}]"
    if metric == "p99 ms" and any(r.slo_met is False for r in row.runs):
        text += " >SLO"  # over the suite's (or --slo-p99-ms) p99 objective
    rank = row.ranks.get(metric)
    return f"{text} #{rank}" if rank else text


def summary_header(rows: list[SummaryRow]) -> list[str]:
    shown = list(rows[0].shown) if rows else []
    return ["variant", "measures", *shown, "load", "runs", *METRICS, "max sustainable"]


def summary_cells(row: SummaryRow) -> list[str]:
    if row.max_sustainable is not None:
        knee = f"{row.max_sustainable:g}/s"
        knee += f" #{row.ranks['max sustainable']}" if "max sustainable" in row.ranks else ""
    else:
        knee = "none found" if row.load == FIND_MAX else "-"
    failed = row.failure is not None
    metrics = ["failed" if failed else metric_cell(row, m) for m in METRICS]
    return [row.variant, row.measures, *row.shown.values(), row.load, str(len(row.runs)),
            *metrics, knee]  # fmt: skip


def summary_table(rows: list[SummaryRow]) -> str:
    """The same summary as the report's, for the terminal."""
    header = summary_header(rows)
    table = [header, *(summary_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in table]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = (
        "median [min-max] over repeats; #rank among rows that measure the same thing "
        "(same route, load and other dimensions); failed rows are never ranked"
    )
    failures = [f"  {r.variant} {r.measures} @ {r.load}: {r.failure}" for r in rows if r.failure]
    tail = ["", "failed:", *failures] if failures else []
    return "summary: " + note + "\n" + "\n".join([*lines, *tail])
