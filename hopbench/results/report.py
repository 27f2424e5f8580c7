"""The report: one self-contained HTML file (inline SVG charts, no scripts, no links
out), and the summary table the terminal prints too.

- a summary ranking the variants on p50, p99, throughput and CPU per 1,000 messages,
  with the spread over repeats and the max sustainable rate where it was searched;
- the latency percentile spectrum of every variant (log axis to p99.99);
- latency against achieved throughput per variant, the knee marked;
- per-second timelines, and where the queue builds (hopbench.results.queuechart);
- the exact configuration, versions and machine of every run.
"""

from __future__ import annotations

import html
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopbench.measure.merge import histogram_from
from hopbench.results.csv import cpu_ms_per_1000
from hopbench.results.queuechart import samples_section
from hopbench.results.schema import ProcessResult, Results, RunResult

SPECTRUM_LEVELS = [1 - 10 ** (-x / 20) for x in range(0, 81)]  # 0 % .. 99.99 %


def variant(run: RunResult) -> str:
    """What a suite varied: the cell's first word (mode or assignment), else the mode."""
    return run.cell.split()[0] if run.cell else run.mode


@dataclass
class SummaryRow:
    variant: str
    load: str
    runs: list[RunResult] = field(default_factory=list)
    max_sustainable: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)

    def values(self, metric: str) -> list[float]:
        get = METRICS[metric]
        return [get(r) for r in self.runs]

    def median(self, metric: str) -> float:
        return statistics.median(self.values(metric))

    def spread(self, metric: str) -> tuple[float, float]:
        values = self.values(metric)
        return min(values), max(values)


METRICS = {
    "p50 ms": lambda r: r.latency_us.p50 / 1000,
    "p99 ms": lambda r: r.latency_us.p99 / 1000,
    "done/s": lambda r: r.completion_rate,
    "CPU ms/1000": cpu_ms_per_1000,
}
LOWER_IS_BETTER = {"p50 ms", "p99 ms", "CPU ms/1000"}


def summary(results: Results) -> list[SummaryRow]:
    rows: dict[tuple[str, str], SummaryRow] = {}
    for run in results.runs:
        key = (variant(run), run.load_label)
        rows.setdefault(key, SummaryRow(*key)).runs.append(run)
    for knee in results.max_sustainable:
        name = str(knee.get("cell") or knee["mode"]).split()[0]
        for row in rows.values():
            if row.variant == name:
                row.max_sustainable = knee["max_sustainable_rate"]
    by_load: dict[str, list[SummaryRow]] = defaultdict(list)
    for row in rows.values():
        by_load[row.load].append(row)
    for group in by_load.values():
        for metric in METRICS:
            ordered = sorted(
                group, key=lambda r: r.median(metric), reverse=metric not in LOWER_IS_BETTER
            )
            for rank, row in enumerate(ordered, start=1):
                row.ranks[metric] = rank
    return list(rows.values())


def _cell(row: SummaryRow, metric: str) -> str:
    median = row.median(metric)
    text = f"{median:.2f}" if median < 100 else f"{median:,.0f}"
    if len(row.runs) > 1:
        low, high = row.spread(metric)
        text += f" [{low:.2f}-{high:.2f}]" if high < 100 else f" [{low:,.0f}-{high:,.0f}]"
    return f"{text} #{row.ranks[metric]}"


SUMMARY_HEADER = ["variant", "load", "runs", *METRICS, "max sustainable"]


def summary_cells(row: SummaryRow) -> list[str]:
    knee = f"{row.max_sustainable:g}/s" if row.max_sustainable else "-"
    return [row.variant, row.load, str(len(row.runs)), *(_cell(row, m) for m in METRICS), knee]


def summary_table(rows: list[SummaryRow]) -> str:
    """The same summary as the report's, for the terminal."""
    table = [SUMMARY_HEADER, *(summary_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(SUMMARY_HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = "median [min-max] over repeats, #rank among variants at the same load"
    return "summary: " + note + "\n" + "\n".join(lines)


# --- charts -------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.2))
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    return figure, axes


def _close(figure: Any) -> str:
    import matplotlib.pyplot as plt

    svg = _svg(figure)
    plt.close(figure)
    return svg


def spectrum_chart(rows: list[SummaryRow]) -> str:
    figure, axes = _figure("Latency by percentile (HdrHistogram style)")
    for row in rows:
        run = max(row.runs, key=lambda r: r.latency_us.count)
        if not run.latency_us.count:
            continue
        hist = histogram_from(run.histograms["latency"])
        xs = [1 / (1 - level) for level in SPECTRUM_LEVELS]
        ys = [hist.get_value_at_percentile(level * 100) / 1000 for level in SPECTRUM_LEVELS]
        axes.plot(xs, ys, label=f"{row.variant} @ {row.load}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms (from intended send)")
    axes.legend(fontsize="small")
    return _close(figure)


def throughput_chart(rows: list[SummaryRow]) -> str:
    figure, axes = _figure("Latency against achieved throughput")
    by_variant: dict[str, list[RunResult]] = defaultdict(list)
    for row in rows:
        by_variant[row.variant].extend(row.runs)
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
            (r.max_sustainable for r in rows if r.variant == name and r.max_sustainable), None
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
    axes.set_yscale("log")
    axes.set_xlabel("completed messages/s inside the measured window")
    axes.set_ylabel("latency, ms")
    axes.legend(fontsize="small", ncol=2)
    return _close(figure)


def timeline_chart(runs: list[RunResult]) -> str:
    figure, axes = _figure("p99 latency per second")
    for run in runs:
        points = [p for p in run.timeline if p.t_s >= 0 and p.p99_us > 0]
        axes.plot(
            [p.t_s for p in points],
            [p.p99_us / 1000 for p in points],
            label=f"{variant(run)} @ {run.load_label}",
        )
    axes.set_yscale("log")
    axes.set_xlabel("second of the measured window")
    axes.set_ylabel("p99, ms")
    axes.legend(fontsize="small")
    return _close(figure)


# --- the page -----------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.chart{margin:1.5em 0} details{margin:.5em 0} code{font-size:12px}
.rank1{background:#e6f4e6;font-weight:600}
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
    header = SUMMARY_HEADER
    table_rows = [summary_cells(r) for r in rows]
    classes = [
        ["", "", "", *("rank1" if r.ranks[m] == 1 else "" for m in METRICS), ""] for r in rows
    ]
    runs_table = _table(
        [
            "cell",
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
                r.cell or r.mode,
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
        "(reply) is a round trip; any other is one way. #1 marks the best variant at a "
        "load; [min–max] is the spread over repeats.</p>",
        "<h2>Summary</h2>",
        _table(header, table_rows, classes),
        "<h2>Latency by percentile</h2>",
        f"<div class='chart'>{spectrum_chart(rows)}</div>",
        "<h2>Latency against throughput</h2>",
        f"<div class='chart'>{throughput_chart(rows)}</div>",
        "<h2>Timelines</h2>",
        f"<div class='chart'>{timeline_chart(results.runs)}</div>",
        samples_section(results.runs, lambda r: f"{variant(r)} @ {r.load_label}"),
        "<h2>Runs</h2>",
        runs_table,
        "<h2>Configuration of every run</h2>",
        configs,
        "</body></html>",
    ]
    return "\n".join(parts)


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
    return f"{p.name}{where}: {p.cpu_s:g} CPU-s, {p.peak_rss_mb:g} MB"


def write_report(results: Results, path: Path, title: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(results, title))
    tmp.replace(path)
