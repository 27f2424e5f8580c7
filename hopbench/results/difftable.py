"""A diff (hopbench.results.diff) for people, within 100 columns, and for machines
(``--json``)."""

from __future__ import annotations

import textwrap
from typing import Any

from hopbench.results.diff import (
    BETTER,
    COMPARED,
    DIFF_SCHEMA,
    FAILED,
    METRICS,
    NOT_MEASURED,
    ONLY_BASELINE,
    TOO_FEW,
    WORSE,
    Diff,
    MetricDiff,
    RowDiff,
)
from hopbench.results.numbers import number

WIDTH = 100
HEADER = ["  metric", "baseline", "candidate", "change", "p", "verdict"]


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")


def _value(value: float | None) -> str:
    return "n/m" if value is None else number(value)


def _change(change: float | None) -> str:
    return "-" if change is None else number(change * 100, signed=True) + "%"


def _p(p: float | None) -> str:
    # a p-value as p-values are written, to three decimals
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _metric_cells(m: MetricDiff) -> list[str]:
    shown = m.gated or m.verdict not in (WORSE, BETTER)
    verdict = m.verdict if shown else f"{m.verdict} (not gated)"
    return [f"  {METRICS[m.metric]}", _value(m.baseline), _value(m.candidate),
            _change(m.change), _p(m.p_value), verdict]  # fmt: skip


def _grid(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the first and last aligned left."""
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    last = len(HEADER) - 1
    return ["  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in table]  # fmt: skip


def _block(row: RowDiff) -> list[str]:
    runs = f"{row.baseline_runs} vs {row.candidate_runs} run(s)"
    lines = _wrap(f"{row.cell}, {row.measures}: {runs}: {row.verdict.upper()}")
    if row.status == COMPARED:
        return lines + _grid([_metric_cells(m) for m in row.metrics])
    if row.failure:
        lines += _wrap(row.failure, "  ")
    return lines


def _worse_of(row: RowDiff) -> str:
    if row.verdict == FAILED:
        return "failed"
    worse = [m for m in row.metrics if m.gated and m.verdict == WORSE]
    return ", ".join(f"{METRICS[m.metric]} {_change(m.change)}" for m in worse)


def _verdict_line(d: Diff, strict: bool) -> list[str]:
    status = d.exit_status(strict)
    bad = [r for r in d.rows if r.verdict in (WORSE, FAILED)]
    if bad:
        what = [f"{r.cell}, {r.measures}: {_worse_of(r)}" for r in bad]
        head = f"verdict: worse (exit {status}): {len(bad)} of {len(d.rows)} row(s): "
        lines = _wrap(head + "; ".join(what))
    else:
        compared = sum(r.status == COMPARED for r in d.rows)
        lines = _wrap(
            f"verdict: {d.verdict} (exit {status}): {compared} of {len(d.rows)} row(s) "
            f"compared on {', '.join(METRICS[m] for m in d.method.gate)}"
        )
    gaps = _gaps(d)
    if gaps:
        fix = "exit 1 with --strict" if not strict else "these fail the diff (--strict)"
        lines += _wrap(f"not judged: {'; '.join(gaps)} ({fix})")
    return lines


def _gaps(d: Diff) -> list[str]:
    """What could not be judged, counted (--json lists each)."""
    gated = [m for r in d.rows for m in r.metrics if m.gated]
    too_few = sum(m.verdict == TOO_FEW for m in gated)
    not_measured = sum(m.verdict == NOT_MEASURED for m in gated)
    missing = sum(r.status == ONLY_BASELINE for r in d.rows)
    need = f"{d.method.min_repeats} runs a side at alpha {d.method.alpha:g}"
    return [
        *([f"{too_few} comparison(s) with too few repeats ({need})"] if too_few else []),
        *([f"{not_measured} comparison(s) not measured"] if not_measured else []),
        *([f"{missing} row(s) only in the baseline"] if missing else []),
    ]


def render_diff(d: Diff, strict: bool = False) -> str:
    """Each row (cell and route) with its metrics, then the verdict and exit status."""
    lines = [
        *_wrap(f"diff {d.baseline} (baseline) against {d.candidate} (candidate)"),
        *_wrap(f"method: {d.method.describe()}"),
    ]
    for row in d.rows:
        lines += ["", *_block(row)]
    if d.skipped_probes:
        lines += ["", *_wrap(f"{d.skipped_probes} find-max probe(s) not compared: evidence "
                             "of a knee, not repeats")]  # fmt: skip
    return "\n".join([*lines, "", *_verdict_line(d, strict)])


def diff_json(d: Diff, strict: bool = False) -> dict[str, Any]:
    """The diff for machines (docs/results.md, "Comparing two results")."""
    method = d.method
    return {
        "schema": DIFF_SCHEMA,
        "baseline": d.baseline,
        "candidate": d.candidate,
        "method": {
            "test": "Mann-Whitney U, two-sided (scipy.stats.mannwhitneyu)",
            "alpha": method.alpha,
            "threshold": method.threshold,
            "min_repeats": method.min_repeats,
            "gate": list(method.gate),
        },
        "verdict": d.verdict,
        "exit_status": d.exit_status(strict),
        "not_judged": d.unjudged(),
        "rows": [
            {
                "cell": r.cell,
                "key": r.key,
                "route": r.route,
                "measures": r.measures,
                "status": r.status,
                "verdict": r.verdict,
                "failure": r.failure,
                "baseline_runs": r.baseline_runs,
                "candidate_runs": r.candidate_runs,
                "metrics": {
                    m.metric: {
                        "label": METRICS[m.metric],
                        "baseline": m.baseline,
                        "candidate": m.candidate,
                        "change": m.change,
                        "p_value": m.p_value,
                        "verdict": m.verdict,
                        "gated": m.gated,
                    }
                    for m in r.metrics
                },
            }
            for r in d.rows
        ],
    }
