"""`hopbench diff BASELINE CANDIDATE`: two results files compared cell by cell and
route by route, each change judged from the repeats.

A row is one cell (hopbench.results.cells: every dimension equal) and one route, so a
round trip is only ever compared with the same round trip. Per metric — the route's
p50 and p99, completions per second, CPU per 1,000 messages, the summary's numbers —
the verdict is (docs/results.md, "Comparing two results"):

- **worse** or **better**: the two-sided Mann–Whitney U test
  (``scipy.stats.mannwhitneyu``; exact without ties) on the per-run values gives
  p < alpha, *and* the medians differ by at least the threshold (relative to the
  baseline's), in that direction;
- **within noise**: otherwise;
- **too few repeats**: the sides have so few runs that no outcome could reach
  p < alpha (the smallest two-sided p is 2 / C(n + m, n): 5 runs a side at 0.01);
  the medians and their change are still shown, never judged (the messages of one
  run are not independent samples: a stall delays thousands together, so testing
  them would call almost any two runs different; the run is what repeats);
- **not measured**: a run lacks the value (CPU of a remote broker).

A row whose candidate has a failed run is **failed**, however its numbers look; one
whose baseline failed is never "better". The runs of a ``--find-max`` search are
probes, not repeats, and are not compared.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from scipy.stats import mannwhitneyu

from hopbench.errors import ConfigError
from hopbench.results.cells import ID_DIMENSIONS, cell_id, dimensions, varying
from hopbench.results.schema import SCHEMA, Results, RunResult
from hopbench.results.summary import LOWER_IS_BETTER, metric_getter

DIFF_SCHEMA = "hopbench.diff/1"
# the name on the command line (--fail-on) -> the summary's metric
METRICS = {"p50": "p50 ms", "p99": "p99 ms", "throughput": "done/s", "cpu": "CPU ms/1000"}
WORSE, BETTER, NOISE = "worse", "better", "within noise"
TOO_FEW, NOT_MEASURED = "too few repeats", "not measured"
# a row's status
COMPARED, FAILED, BASELINE_FAILED = "compared", "failed", "baseline failed"
ONLY_BASELINE, ONLY_CANDIDATE = "only in baseline", "only in candidate"


@dataclass(frozen=True)
class Method:
    """How a change is judged: significance (alpha) and a minimum effect (threshold)."""

    # a gate that cries wolf gets switched off: with nothing changed, each metric's
    # test calls it worse at most alpha / 2 of the time
    alpha: float = 0.01
    threshold: float = 0.10  # a smaller relative change of the medians is noise
    gate: tuple[str, ...] = tuple(METRICS)  # the metrics whose "worse" fails the diff

    @classmethod
    def from_flags(cls, fail_on: str | None, threshold_pct: float, alpha: float) -> Method:
        gate = tuple(m.strip() for m in (fail_on or ",".join(METRICS)).split(",") if m.strip())
        unknown = [m for m in gate if m not in METRICS]
        if unknown or not gate:
            raise ConfigError(
                f"--fail-on {fail_on!r}: give a comma list of {', '.join(METRICS)}, "
                "e.g. --fail-on p99,cpu"
            )
        if not threshold_pct >= 0:  # NaN too
            raise ConfigError(f"--threshold {threshold_pct:g}: a percentage, 0 or more, e.g. 10")
        if not 0 < alpha < 1:
            raise ConfigError(f"--alpha {alpha:g}: a significance level, e.g. 0.01 (0 to 1)")
        return cls(alpha=alpha, threshold=threshold_pct / 100, gate=gate)

    @property
    def min_repeats(self) -> int:
        """The fewest runs a side (as many on both) that can show a change at alpha."""
        return next((n for n in range(1, 100) if smallest_p(n, n) < self.alpha), 100)

    def describe(self) -> str:
        return (
            "two-sided Mann-Whitney U test on the per-run values (scipy), "
            f"alpha {self.alpha:g}; a change of the medians under {self.threshold:.0%} is "
            f"within noise; fewer than {self.min_repeats} runs a side: too few repeats"
        )


def smallest_p(n: int, m: int) -> float:
    """The smallest two-sided p-value the exact U test can give for n and m runs."""
    return min(1.0, 2 / math.comb(n + m, n))


@dataclass(frozen=True)
class MetricDiff:
    metric: str  # a key of METRICS
    baseline: float | None  # the median over the runs; None: not measured
    candidate: float | None
    change: float | None  # (candidate - baseline) / baseline; None: unknown
    p_value: float | None  # None: not tested
    verdict: str
    gated: bool  # its "worse" fails the diff (--fail-on)


@dataclass(frozen=True)
class RowDiff:
    cell: str  # the cell in a line (hopbench.results.cells.cell_id)
    key: dict[str, str]  # every dimension by name
    route: str
    measures: str  # "round trip", "one-way to worker"
    status: str  # COMPARED, FAILED, BASELINE_FAILED, ONLY_BASELINE, ONLY_CANDIDATE
    baseline_runs: int
    candidate_runs: int
    failure: str | None = None
    metrics: list[MetricDiff] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The row's verdict: failed, or the worst of its gated metrics."""
        if self.status != COMPARED:
            return self.status
        verdicts = {m.verdict for m in self.metrics if m.gated}
        order = (WORSE, BETTER, NOISE, TOO_FEW, NOT_MEASURED)
        return next((v for v in order if v in verdicts), NOISE)


@dataclass(frozen=True)
class Diff:
    baseline: str
    candidate: str
    method: Method
    rows: list[RowDiff]
    skipped_probes: int = 0

    @property
    def verdict(self) -> str:
        """worse, better, within noise, or not judged (nothing could be)."""
        verdicts = [r.verdict for r in self.rows]
        if FAILED in verdicts or WORSE in verdicts:
            return WORSE
        if BETTER in verdicts:
            return BETTER
        return NOISE if NOISE in verdicts else "not judged"

    def unjudged(self) -> list[str]:
        """Gated comparisons that could not be judged, and cells the candidate lacks."""
        gaps = [f"{r.cell}, {r.measures}: {ONLY_BASELINE}" for r in self.rows
                if r.status == ONLY_BASELINE]  # fmt: skip
        for row in self.rows:
            unjudged = [m for m in row.metrics if m.gated and m.verdict in (TOO_FEW, NOT_MEASURED)]
            gaps += [f"{row.cell}, {row.measures}: {METRICS[m.metric]} {m.verdict}"
                     for m in unjudged]  # fmt: skip
        return gaps

    def exit_status(self, strict: bool = False) -> int:
        """1 when a gated metric got worse or a candidate run failed (with strict, also
        when a gated metric or a baseline cell could not be judged); else 0."""
        return 1 if self.verdict == WORSE or (strict and self.unjudged()) else 0


def read_side(path: Path, role: str) -> Results:
    """A results folder (its results.json), a results.json, or a folder of results
    folders, their runs pooled (to measure the two sides interleaved); errors say which
    side, which file and the fix."""
    if path.is_dir() and not (path / "results.json").exists():
        parts = sorted(path.glob("*/results.json"))
        if parts:
            return Results(runs=[run for part in parts for run in _read(part, role).runs])
    return _read(path / "results.json" if path.is_dir() else path, role)


def _read(file: Path, role: str) -> Results:
    if not file.exists():
        in_folder = file.name == "results.json" and file.parent.is_dir()
        where = f"{file.parent} has no results.json" if in_folder else f"{file}: no such file"
        raise ConfigError(
            f"{role} {where}; give a results folder (the --out of `hopbench run` or "
            "`hopbench compare`), its results.json, or a folder of results folders"
        )
    try:
        schema = json.loads(file.read_text()).get("schema")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{role} {file}: not a results file ({exc})") from None
    if schema != SCHEMA:
        raise ConfigError(
            f"{role} {file}: results of schema {schema!r}; this hopbench compares {SCHEMA} "
            "only (docs/results.md says what changed). Measure it again with this version "
            "(the same `hopbench run` or `hopbench compare` into another --out), or diff "
            "with the version that wrote it"
        )
    return Results.read(file)


Side = dict[tuple[tuple[tuple[str, str], ...], str], list[RunResult]]


def _rows_of(results: Results) -> Side:
    """The runs of each (cell, route); probes are not repeats."""
    side: Side = {}
    for run in results.runs:
        if run.probe:
            continue
        key = tuple(sorted(dimensions(run).items()))
        for route in run.routes:
            side.setdefault((key, route.route), []).append(run)
    return side


def diff_results(
    baseline: Results, candidate: Results, method: Method, names: tuple[str, str]
) -> Diff:
    """Every (cell, route) of either side: compared where both have it, else listed."""
    base, cand = _rows_of(baseline), _rows_of(candidate)
    if not set(base) & set(cand):
        raise ConfigError(_no_match(baseline, candidate, names))
    label = _labeller([*baseline.runs, *candidate.runs])
    rows = []
    for key in [*base, *(k for k in cand if k not in base)]:
        runs_b, runs_c = base.get(key, []), cand.get(key, [])
        first = (runs_b or runs_c)[0]
        row = RowDiff(
            cell=label(first),
            key=dict(key[0]),
            route=key[1],
            measures=next(r.measures or r.route for r in first.routes if r.route == key[1]),
            status=COMPARED,
            baseline_runs=len(runs_b),
            candidate_runs=len(runs_c),
        )
        rows.append(_compare(row, runs_b, runs_c, method))
    probes = sum(r.probe for r in [*baseline.runs, *candidate.runs])
    return Diff(names[0], names[1], method, rows, probes)


def _labeller(runs: list[RunResult]) -> Callable[[RunResult], str]:
    """A cell's id, with the dimensions it leaves out when they vary (workers, window)."""
    extra = [d for d in varying(runs) if d not in ID_DIMENSIONS and d != "settings"]

    def label(run: RunResult) -> str:
        dims = dimensions(run)
        return " ".join([cell_id(run), *(dims[d] for d in extra)])

    return label


def _compare(
    row: RowDiff, runs_b: list[RunResult], runs_c: list[RunResult], method: Method
) -> RowDiff:
    """The row with its status and, when both sides ran cleanly, its metrics."""
    failed_c = [r for r in runs_c if r.failed]
    failed_b = [r for r in runs_b if r.failed]
    if not runs_b:
        status, failure = ONLY_CANDIDATE, failed_c[0].failure if failed_c else None
    elif not runs_c:
        status, failure = ONLY_BASELINE, None
    elif failed_c:
        share = f"{len(failed_c)} of {len(runs_c)} candidate runs failed; "
        status, failure = FAILED, share + str(failed_c[0].failure)
    elif failed_b:
        share = f"{len(failed_b)} of {len(runs_b)} baseline runs failed; "
        status, failure = BASELINE_FAILED, share + str(failed_b[0].failure)
    else:
        metrics = [_judge(name, row.route, runs_b, runs_c, method) for name in METRICS]
        return replace(row, metrics=metrics)
    if status == ONLY_CANDIDATE and failed_c:
        status = FAILED  # a new cell that fails is a failure all the same
    return replace(row, status=status, failure=failure)


def _judge(name: str, route: str, runs_b: list[RunResult], runs_c: list[RunResult],
           method: Method) -> MetricDiff:  # fmt: skip
    get = metric_getter(METRICS[name], route)
    values_b, values_c = [get(r) for r in runs_b], [get(r) for r in runs_c]
    gated = name in method.gate
    if None in values_b or None in values_c:
        return MetricDiff(name, None, None, None, None, NOT_MEASURED, gated)
    b = [float(v) for v in values_b if v is not None]
    c = [float(v) for v in values_c if v is not None]
    med_b, med_c = statistics.median(b), statistics.median(c)
    change = (med_c - med_b) / med_b if med_b else (0.0 if med_c == med_b else None)
    if smallest_p(len(b), len(c)) >= method.alpha:
        return MetricDiff(name, med_b, med_c, change, None, TOO_FEW, gated)
    # exact without ties when either side has at most 8 runs, else the normal approximation
    # with scipy's tie correction; identical values on both sides give p = 1
    p = 1.0 if len({*b, *c}) == 1 else float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    verdict = NOISE
    if p < method.alpha and (change is None or abs(change) >= method.threshold):
        higher = med_c > med_b
        verdict = WORSE if higher == (METRICS[name] in LOWER_IS_BETTER) else BETTER
    return MetricDiff(name, med_b, med_c, change, p, verdict, gated)


def _no_match(baseline: Results, candidate: Results, names: tuple[str, str]) -> str:
    """Why no cell matches: the dimensions whose values differ between the sides."""
    dims_b = [dimensions(r) for r in baseline.runs if not r.probe]
    dims_c = [dimensions(r) for r in candidate.runs if not r.probe]
    if not dims_b or not dims_c:
        empty = names[0] if not dims_b else names[1]
        return f"{empty}: no measured run to compare (find-max probes are not compared)"
    differ = []
    for dim in dims_b[0]:
        in_b = sorted({d[dim] for d in dims_b})
        in_c = sorted({d[dim] for d in dims_c})
        if in_b != in_c:
            differ.append(f"{dim}: {', '.join(in_b)} against {', '.join(in_c)}")
    if not differ:
        differ.append("each value occurs on both sides, but in other combinations")
    return (
        f"no cell of {names[1]} matches one of {names[0]}: a cell matches when every "
        "dimension is equal (docs/results.md, cells), and these differ: "
        + "; ".join(differ)
        + ". Measure the candidate with the baseline's suite or command line"
    )
