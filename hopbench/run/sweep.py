"""Many runs of one topology: rate sweeps, repeats, and the search for the knee.

``find_max`` looks for the highest rate at which the system keeps up: the load
generator sent at least 99 % of the target, completions inside the measured window
kept pace (at least 99 % of the target; both less one message, as a window holds a whole
number of them), nothing was lost or failed, and p99 stayed
within the SLO when one is given. It doubles the rate until a probe fails, then
bisects until the bracket is within ``precision``; every probe is kept as evidence.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hopbench.results.cells import cell_id, dimensions
from hopbench.results.schema import RunResult, short_of

RunAt = Callable[[float], Awaitable[RunResult]]


def verdict(run: RunResult, slo_p99_us: float | None) -> str | None:
    """Why this run did not keep up, or None when it did."""
    if run.failed:
        return f"failed: {run.failure}"
    target = run.target_rate
    if short_of(run.achieved_rate, target, run.duration_s):
        return f"sent {run.achieved_rate:.0f}/s of {target:g}/s (the load generator fell behind)"
    if short_of(run.completion_rate, target, run.duration_s):
        return f"completed {run.completion_rate:.0f}/s of {target:g}/s inside the window"
    if run.lost or run.errors:
        return f"{run.lost} lost, {run.errors} errors"
    if slo_p99_us is not None and run.latency_us.p99 > slo_p99_us:
        return f"p99 {run.latency_us.p99 / 1000:.2f} ms > SLO {slo_p99_us / 1000:g} ms"
    return None


@dataclass
class Probe:
    rate: float
    run_id: str
    passed: bool
    reason: str


@dataclass
class Knee:
    topology: str
    mode: str
    slo_p99_ms: float | None
    max_sustainable_rate: float | None
    probes: list[Probe] = field(default_factory=list)
    variant: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "mode": self.mode,
            "variant": self.variant or self.mode,
            "slo_p99_ms": self.slo_p99_ms,
            "max_sustainable_rate": self.max_sustainable_rate,
            "evidence": [p.__dict__ for p in self.probes],
        }


async def find_max(
    run_at: RunAt,
    *,
    start_rate: float,
    slo_p99_ms: float | None,
    precision: float = 0.05,
    max_probes: int = 14,
    on_probe: Callable[[RunResult, Probe], None] = lambda run, probe: None,
) -> tuple[float | None, list[Probe]]:
    slo_us = slo_p99_ms * 1000 if slo_p99_ms is not None else None
    probes: list[Probe] = []

    async def probe(rate: float) -> bool:
        run = await run_at(rate)
        reason = verdict(run, slo_us)
        probes.append(Probe(rate, run.run_id, reason is None, reason or "kept up"))
        on_probe(run, probes[-1])
        return reason is None

    good: float | None = None
    bad: float | None = None
    rate = start_rate
    while len(probes) < max_probes:  # grow until something fails
        if await probe(rate):
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    if bad is None:
        return good, probes
    if good is None:  # even the start rate failed: search below it
        good, bad = await _below(probe, bad, lambda: len(probes) < max_probes)
        if good is None:
            return None, probes
    while len(probes) < max_probes and (bad - good) / good > precision:
        rate = round((good + bad) / 2, 1)
        if await probe(rate):
            good = rate
        else:
            bad = rate
    return good, probes


async def _below(
    probe: Callable[[float], Awaitable[bool]], bad: float, more: Callable[[], bool]
) -> tuple[float | None, float]:
    """Halve the rate until a probe passes, down to 1/16 of the first failure."""
    floor = bad / 2**4
    while more():
        rate = bad / 2
        if rate < floor:
            break
        if await probe(rate):
            return rate, bad
        bad = rate
    return None, bad


METRICS: dict[str, Callable[[RunResult], float]] = {
    "achieved_rate": lambda r: r.achieved_rate,
    "completion_rate": lambda r: r.completion_rate,
    "p50_us": lambda r: r.latency_us.p50,
    "p99_us": lambda r: r.latency_us.p99,
    "p999_us": lambda r: r.latency_us.p999,
    "max_us": lambda r: r.latency_us.max,
    "service_p50_us": lambda r: r.service_time_us.p50,
    "lost": lambda r: r.lost,
    "errors": lambda r: r.errors,
}


def cell_key(run: RunResult) -> tuple[tuple[str, str], ...]:
    """Runs with equal keys are repeats: every dimension equal (hopbench.results.cells)."""
    return tuple(sorted(dimensions(run).items()))


def summarize_cells(runs: list[RunResult]) -> list[dict[str, Any]]:
    """Median and spread (min, max) of every metric over a cell's repeats (a failed
    repeat fails the cell; --find-max probes are evidence, not repeats)."""
    cells: dict[tuple[tuple[str, str], ...], list[RunResult]] = {}
    for run in runs:
        if not run.probe:
            cells.setdefault(cell_key(run), []).append(run)
    out = []
    for key, members in cells.items():
        metrics = {}
        for name, get in METRICS.items():
            values = [float(get(r)) for r in members]
            metrics[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
        failed = [r for r in members if r.failed]
        out.append(
            {
                "cell": cell_id(members[0]),
                "key": dict(key),
                "status": "failed" if failed else "ok",
                "failure": failed[0].failure if failed else None,
                "topology": members[0].topology,
                "mode": members[0].mode,
                "variant": members[0].variant or members[0].mode,
                "target_rate": members[0].target_rate,
                "repeats": len(members),
                "run_ids": [r.run_id for r in members],
                "metrics": metrics,
            }
        )
    return out
