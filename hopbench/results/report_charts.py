"""The report's comparison charts (inline SVG): the latency spectrum per cell, latency
against achieved throughput with one line per cell over its loads (never between two
payloads, replica counts or any other dimension, never through a failed run or a
probe), and the p99 per second of every measured run."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hopbench.measure.merge import histogram_from
from hopbench.results.cells import variant_label
from hopbench.results.charts import close, figure
from hopbench.results.schema import RunResult
from hopbench.results.summary import FIND_MAX, SummaryRow

SPECTRUM_LEVELS = [1 - 10 ** (-x / 20) for x in range(0, 81)]  # 0 % .. 99.99 %


def _log_y(axes: Any) -> None:
    """A log axis, when there is something to draw (a page of failed runs has not)."""
    if axes.get_legend_handles_labels()[0]:
        axes.set_yscale("log")


def _legend(axes: Any, ncol: int = 1) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", ncol=ncol)


def spectrum_chart(rows: list[SummaryRow]) -> str:
    fig, axes = figure("Latency by percentile (HdrHistogram style)")
    drawn: set[str] = set()
    for row in rows:
        if not row.runs or row.failure or row.load == FIND_MAX:
            continue
        run = max(row.runs, key=lambda r: r.latency_us.count)
        if not run.latency_us.count or run.run_id in drawn:
            continue
        drawn.add(run.run_id)  # one line per cell: the histogram is the run's, every route
        hist = histogram_from(run.histograms["latency"])
        xs = [1 / (1 - level) for level in SPECTRUM_LEVELS]
        ys = [hist.get_value_at_percentile(level * 100) / 1000 for level in SPECTRUM_LEVELS]
        axes.plot(xs, ys, label=curve_name(row) + f" @ {row.load}")
    axes.set_xscale("log")
    _log_y(axes)
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms (from intended send)")
    _legend(axes)
    return close(fig)


def curve_name(row: SummaryRow) -> str:
    """A cell without its load: the variant, what it measures, the other dimensions."""
    return ", ".join([row.variant, row.measures, *row.shown.values()])


def load_curves(rows: list[SummaryRow]) -> dict[str, list[SummaryRow]]:
    """The measured rows by cell without its load, each list ordered by throughput: the
    points one line may join. Failed rows and searches are not points of a curve."""
    curves: dict[str, list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.load != FIND_MAX and row.failure is None and row.runs:
            curves[curve_name(row)].append(row)
    for points in curves.values():
        points.sort(key=lambda r: r.median("done/s") or 0.0)
    return dict(curves)


def throughput_chart(rows: list[SummaryRow]) -> str:
    fig, axes = figure("Latency against achieved throughput")
    knees = {curve_name(r): r.max_sustainable for r in rows if r.load == FIND_MAX}
    for name, points in load_curves(rows).items():
        rates = [r.median("done/s") or 0.0 for r in points]
        line = axes.plot(rates, [r.median("p99 ms") for r in points], marker="o",
                         label=f"{name} p99")  # fmt: skip
        color = line[0].get_color()
        axes.plot(rates, [r.median("p50 ms") for r in points], marker=".", linestyle=":",
                  color=color, label=f"{name} p50")  # fmt: skip
        knee = knees.get(name)
        if knee:
            _knee(axes, knee, color)
    for name, knee in knees.items():  # a search alone: its knee, without a curve
        if knee and name not in load_curves(rows):
            _knee(axes, knee, "grey", name)
    _log_y(axes)
    axes.set_xlabel("completed messages/s inside the measured window (median over repeats)")
    axes.set_ylabel("latency, ms")
    _legend(axes, ncol=2)
    return close(fig)


def _knee(axes: Any, rate: float, color: str, name: str = "") -> None:
    axes.axvline(rate, color=color, linestyle="--", alpha=0.7)
    axes.annotate(f"knee {rate:g}/s" + (f" ({name})" if name else ""), (rate, 1),
                  xycoords=("data", "axes fraction"), fontsize="small", rotation=90,
                  va="top", ha="right")  # fmt: skip


def timeline_chart(runs: list[RunResult]) -> str:
    fig, axes = figure("p99 latency per second")
    for run in runs:
        if run.probe or run.failed:
            continue  # probes are evidence of the knee; failed runs are listed as failed
        points = [p for p in run.timeline if p.t_s >= 0 and p.p99_us > 0]
        axes.plot(
            [p.t_s for p in points],
            [p.p99_us / 1000 for p in points],
            label=f"{variant_label(run)} @ {run.load_label}",
        )
        for event in run.faults:  # each fault at its moment, named
            axes.axvline(event.t_s, color="red", linestyle=":", alpha=0.7)
            axes.annotate(event.what.split(";")[0][:60], (event.t_s, 1),
                          xycoords=("data", "axes fraction"), fontsize="x-small", rotation=90,
                          va="top", ha="right", color="red")  # fmt: skip
    _log_y(axes)
    axes.set_xlabel("second of the measured window")
    axes.set_ylabel("p99, ms")
    _legend(axes)
    return close(fig)
