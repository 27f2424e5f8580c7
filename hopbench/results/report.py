"""The report: one self-contained HTML file (inline SVG charts, no scripts, no links
out), and the summary table the terminal prints too.

- the summary (hopbench.results.summary): per cell and route, what it measures, p50,
  p99, throughput and CPU per 1,000 messages with the spread over repeats, ranked
  only among rows that measure the same thing; failed rows shown failed, with why;
- the latency percentile spectrum of every variant (log axis to p99.99);
- latency against achieved throughput per variant, the knee marked;
- per-second timelines, and where the queue builds (hopbench.results.queuechart);
- per route, where the mean latency goes: each hop's transit, wait, work and rest, as a
  stacked bar per variant and load, with each part's p50 and p99;
- the exact configuration, versions and machine of every run.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from hopbench.measure.merge import histogram_from
from hopbench.results.cells import variant_label
from hopbench.results.charts import breakdown_chart
from hopbench.results.charts import close as _close
from hopbench.results.charts import figure as _figure
from hopbench.results.queuechart import samples_section
from hopbench.results.schema import (
    Percentiles,
    ProcessResult,
    Results,
    RouteResult,
    RunResult,
)
from hopbench.results.summary import (
    FIND_MAX,
    METRICS,
    SummaryRow,
    summary,
    summary_cells,
    summary_header,
    summary_table,
)

__all__ = ["render_html", "summary", "summary_table", "write_report"]

SPECTRUM_LEVELS = [1 - 10 ** (-x / 20) for x in range(0, 81)]  # 0 % .. 99.99 %


# --- charts -------------------------------------------------------------------------


def _log_y(axes: Any) -> None:
    """A log axis, when there is something to draw (a page of failed runs has not)."""
    if axes.get_legend_handles_labels()[0]:
        axes.set_yscale("log")


def _legend(axes: Any, ncol: int = 1) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", ncol=ncol)


def spectrum_chart(rows: list[SummaryRow]) -> str:
    figure, axes = _figure("Latency by percentile (HdrHistogram style)")
    drawn: set[str] = set()
    for row in rows:
        if not row.runs or row.failure:
            continue
        run = max(row.runs, key=lambda r: r.latency_us.count)
        if not run.latency_us.count or run.run_id in drawn:
            continue
        drawn.add(run.run_id)  # one line per cell: the histogram is the run's, every route
        hist = histogram_from(run.histograms["latency"])
        xs = [1 / (1 - level) for level in SPECTRUM_LEVELS]
        ys = [hist.get_value_at_percentile(level * 100) / 1000 for level in SPECTRUM_LEVELS]
        axes.plot(xs, ys, label=f"{row.variant} @ {row.load}")
    axes.set_xscale("log")
    _log_y(axes)
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms (from intended send)")
    _legend(axes)
    return _close(figure)


def throughput_chart(rows: list[SummaryRow]) -> str:
    figure, axes = _figure("Latency against achieved throughput")
    # a line joins the loads of one variant, route and every other dimension: never
    # two payloads or replica counts, never a failed run
    by_variant: dict[str, list[RunResult]] = defaultdict(list)
    for row in rows:
        if row.load != FIND_MAX and not row.failure:
            other = "".join(f", {v}" for v in row.shown.values())
            by_variant[f"{row.variant}, {row.measures}{other}"].extend(row.runs)
    for name, runs in by_variant.items():
        runs = sorted(runs, key=lambda r: r.completion_rate)
        rates = [r.completion_rate for r in runs]
        line = axes.plot(
            rates, [r.latency_us.p99 / 1000 for r in runs], marker="o", label=f"{name} p99"
        )
        color = line[0].get_color()
        axes.plot(
            rates,
            [r.latency_us.p50 / 1000 for r in runs],
            marker=".",
            linestyle=":",
            color=color,
            label=f"{name} p50",
        )
        knee = next(
            (r.max_sustainable for r in rows if name.startswith(r.variant) and r.max_sustainable),
            None,
        )
        if knee:
            axes.axvline(knee, color=color, linestyle="--", alpha=0.7)
            axes.annotate(
                f"knee {knee:g}/s",
                (knee, axes.get_ylim()[1]),
                fontsize="small",
                rotation=90,
                va="top",
                ha="right",
            )
    _log_y(axes)
    axes.set_xlabel("completed messages/s inside the measured window")
    axes.set_ylabel("latency, ms")
    _legend(axes, ncol=2)
    return _close(figure)


def timeline_chart(runs: list[RunResult]) -> str:
    figure, axes = _figure("p99 latency per second")
    for run in runs:
        if run.probe:
            continue  # evidence of the knee, listed with the runs
        points = [p for p in run.timeline if p.t_s >= 0 and p.p99_us > 0]
        axes.plot(
            [p.t_s for p in points],
            [p.p99_us / 1000 for p in points],
            label=f"{variant_label(run)} @ {run.load_label}",
        )
    _log_y(axes)
    axes.set_xlabel("second of the measured window")
    axes.set_ylabel("p99, ms")
    _legend(axes)
    return _close(figure)


# --- the page -----------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.chart{margin:1.5em 0} details{margin:.5em 0} code{font-size:12px}
.rank1{background:#e6f4e6;font-weight:600} .failed{color:#a00;font-weight:600}
"""


def _table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="{(classes or [[]] * len(rows))[i][j] if classes else ""}">'
            f"{html.escape(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(results: Results, title: str) -> str:
    rows = summary(results)
    header = summary_header(rows)
    table_rows = [summary_cells(r) for r in rows]
    first_metric = header.index(METRICS[0])
    classes = [
        [""] * first_metric
        + ["failed" if r.failure else "rank1" if r.ranks.get(m) == 1 else "" for m in METRICS]
        + [""]
        for r in rows
    ]
    failures = "".join(
        f"<li>{html.escape(f'{r.variant}, {r.measures} @ {r.load}: {r.failure}')}</li>"
        for r in rows
        if r.failure
    )
    runs_table = _table(
        [
            "cell",
            "status",
            "run",
            "sent",
            "done",
            "lost",
            "dup",
            "err",
            "p50 ms",
            "p99 ms",
            "max ms",
            "generator limited",
        ],
        [
            [
                r.cell or variant_label(r),
                ("probe " if r.probe else "") + r.status,
                r.run_id,
                str(r.sent),
                str(r.completed),
                str(r.lost),
                str(r.duplicated),
                str(r.errors),
                f"{r.latency_us.p50 / 1000:.2f}",
                f"{r.latency_us.p99 / 1000:.2f}",
                f"{r.latency_us.max / 1000:.2f}",
                "yes" if r.generator_limited else "",
            ]
            for r in results.runs
        ],
    )
    configs = "".join(_config(r) for r in results.runs)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p>Latency is completion − <em>intended</em> send time (coordinated-omission-"
        "correct), merged from HdrHistograms of every process. A route ending in "
        "(reply) is a round trip; any other is one way. #1 marks the best row among "
        "those that measure the same thing (same route, load and every other dimension); "
        "a failed run is never ranked. [min–max] is the spread over repeats; n/m: not "
        "measured.</p>",
        "<h2>Summary</h2>",
        _table(header, table_rows, classes),
        f"<p>Failed:</p><ul class='failed'>{failures}</ul>" if failures else "",
        "<h2>Latency by percentile</h2>",
        f"<div class='chart'>{spectrum_chart(rows)}</div>",
        "<h2>Latency against throughput</h2>",
        f"<div class='chart'>{throughput_chart(rows)}</div>",
        "<h2>Timelines</h2>",
        f"<div class='chart'>{timeline_chart(results.runs)}</div>",
        breakdown_section(results.runs),
        samples_section(results.runs, lambda r: f"{variant_label(r)} @ {r.load_label}"),
        "<h2>Runs</h2>",
        runs_table,
        "<h2>Configuration of every run</h2>",
        configs,
        "</body></html>",
    ]
    return "\n".join(parts)


def breakdown_section(runs: list[RunResult]) -> str:
    """Per route: the stacked breakdown of the mean per variant and load, and a table
    of each hop's parts (mean share, p50 and p99)."""
    by_route: dict[str, list[tuple[str, RouteResult]]] = defaultdict(list)
    for run in runs:
        for route in run.routes:
            if route.breakdown is not None:
                by_route[route.route].append((f"{variant_label(run)} @ {run.load_label}", route))
    if not by_route:
        return ""
    parts = [
        "<h2>Where the time goes</h2>",
        "<p>Each bar is a route's mean latency split along its critical path: the load "
        "generator's send lag, then per hop <em>transit</em> (from the previous send until "
        "its transport had the message), <em>wait</em> (for a free handler), "
        "<em>work</em>, and <em>rest</em> (its own time after its work: gathering, "
        "publishing, the reply's trip back). The parts of every message add up exactly; "
        "the residual is the histogram's rounding. Percentiles do not add: p50 and p99 "
        "are each part's own.</p>",
    ]
    header = ["variant", "mean ms", "hop", "transit", "wait", "work", "rest", "on path"]
    for name, routes in by_route.items():
        bars = [(label, route.breakdown) for label, route in routes if route.breakdown]
        rows = [row for label, route in routes for row in _breakdown_rows(label, route)]
        parts += [
            f"<h3>{html.escape(name)}</h3>",
            f"<div class='chart'>{breakdown_chart(name, bars)}</div>",
            "<p>ms: mean share (p50 / p99 of the part)</p>",
            _table(header, rows),
        ]
    return "\n".join(parts)


def _breakdown_rows(label: str, route: RouteResult) -> list[list[str]]:
    breakdown = route.breakdown
    if breakdown is None:
        return []
    blank = ["", "", "", ""]
    rows = [[label, f"{breakdown.latency_mean_us / 1000:.3f}", "send lag",
             f"{breakdown.send_lag_us / 1000:.3f}", *blank]]  # fmt: skip
    hops = {h.service: h for h in route.hops}
    for share in breakdown.hops:
        hop = hops[share.service]
        rows.append(["", "", share.service,
                     _part(share.transit_us, hop.transit_us), _part(share.wait_us, hop.wait_us),
                     _part(share.work_us, hop.work_us), _part(share.rest_us, hop.rest_us),
                     f"{share.on_path:.0%}"])  # fmt: skip
    rows.append(["", "", "residual", f"{breakdown.residual_us / 1000:+.3f}", *blank])
    return rows


def _part(share_us: float, part: Percentiles) -> str:
    if not part.count:
        return "-"
    return f"{share_us / 1000:.3f} ({part.p50 / 1000:.3f} / {part.p99 / 1000:.3f})"


def _config(run: RunResult) -> str:
    edges = ", ".join(
        f"{e.name}: {e.mode} {e.pattern}" + (f" {e.settings}" if e.settings else "")
        for e in run.edges
    )
    facts = {
        "topology": f"{run.topology} ({run.source})",
        "edges": edges,
        "load": str(run.load),
        "settings": str(run.settings),
        "brokers": str(run.brokers),
        "machine": str({k: v for k, v in run.environment.items() if k != "packages"}),
        "versions": str(run.environment.get("packages", {})),
        "processes": "; ".join(_process(p) for p in run.processes),
        "started": run.started_at,
        "status": run.status + (f": {run.failure}" if run.failure else ""),
        "notes": "; ".join(run.notes) or "-",
    }
    body = "".join(
        f"<tr><th>{k}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in facts.items()
    )
    return (
        f"<details><summary>{html.escape(run.cell or run.mode)} — run {run.run_id}"
        f"</summary><table>{body}</table></details>"
    )


def _process(p: ProcessResult) -> str:
    where = "" if p.host == "local" else f" at {p.host}"
    if p.machine:
        where += f" ({p.machine.get('hostname')}, {p.machine.get('cpus')} CPUs)"
    if p.clock and not p.clock.get("same_host"):
        offset, error = p.clock["applied_offset_us"], p.clock["uncertainty_us"]
        where += f", clock offset {offset:+,.0f} ± {error:,.0f} µs"
    cpu = "CPU not measured" if p.cpu_s is None else f"{p.cpu_s:g} CPU-s in the window"
    died = f", died: {p.died}" if p.died else ""
    error = f", {p.errors} error(s), the first: {p.first_error}" if p.first_error else ""
    return f"{p.name}{where}: {cpu}, {p.peak_rss_mb:g} MB{error}{died}"


def write_report(results: Results, path: Path, title: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(results, title))
    tmp.replace(path)
