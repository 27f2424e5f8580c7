"""The report: one self-contained HTML file (inline SVG charts, no scripts, no links
out), titled by the suite that produced it, for someone choosing an architecture:

- the verdict first: per group of comparable rows, which variant wins on what; the
  knee of each search; the bottleneck of every run that did not keep up; every
  failed run with its cause (hopbench.results.report_sections);
- the summary (hopbench.results.summary): per cell and route, what it measures, p50,
  p99, throughput and CPU per 1,000 messages with the spread over repeats, ranked
  only among rows that measure the same thing; failed rows shown failed;
- per route, where the mean latency goes: each hop's transit, wait, work and rest;
- where the queue builds: queues, lag, in-flight and CPU per second
  (hopbench.results.queuechart);
- the latency spectrum, latency against throughput (one line per cell over its
  loads) and the p99 per second (hopbench.results.report_charts);
- the knee searches with their probes as evidence, every run's counts, and every
  run's configuration in words.
"""

from __future__ import annotations

import html
from pathlib import Path

from hopbench.config.outdir import atomic_write_text
from hopbench.results.cells import variant_label
from hopbench.results.queuechart import samples_section
from hopbench.results.report_charts import spectrum_chart, throughput_chart, timeline_chart
from hopbench.results.report_sections import (
    breakdown_section,
    config_section,
    knees_section,
    runs_table,
    table,
    verdict_section,
)
from hopbench.results.schema import Results
from hopbench.results.summary import METRICS, summary, summary_cells, summary_header, summary_table

__all__ = ["breakdown_section", "render_html", "summary", "summary_table", "title_of",
           "write_report"]  # fmt: skip

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
table.config td{text-align:left} table.config ul{margin:0;padding-left:1.2em}
.chart{margin:1.5em 0} details{margin:.5em 0}
.rank1{background:#e6f4e6;font-weight:600} .failed{color:#a00;font-weight:600}
ul.verdict li{margin:.3em 0} .subtitle{color:#555;margin-top:-.5em}
"""


def title_of(results: Results, fallback: str = "") -> str:
    """The suite's name (and description) when a suite produced the results; else
    ``fallback``, or the topologies that were run."""
    suite = results.suite
    if suite.get("name"):
        return f"hopbench: {suite['name']}"
    if fallback:
        return fallback
    return "hopbench: " + ", ".join(dict.fromkeys(r.topology for r in results.runs))


def _summary_table(results: Results) -> str:
    rows = summary(results)
    header = summary_header(rows)
    first_metric = header.index(METRICS[0])
    classes = [
        [""] * first_metric
        + ["failed" if r.failure else "rank1" if r.ranks.get(m) == 1 else "" for m in METRICS]
        + [""]
        for r in rows
    ]
    return table(header, [summary_cells(r) for r in rows], classes)


def render_html(results: Results, title: str = "") -> str:
    title = title_of(results, title)
    rows = summary(results)
    description = results.suite.get("description", "")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p class='subtitle'>{html.escape(description)}</p>" if description else "",
        verdict_section(rows, results),
        "<h2>Summary</h2>",
        "<p>Latency is completion − <em>intended</em> send time (coordinated-omission-"
        "correct), merged from HdrHistograms of every process. A route ending in "
        "(reply) is a round trip; any other is one way. #1 marks the best row among "
        "those that measure the same thing (same route, load and every other dimension); "
        "a failed run is never ranked. [min–max] is the spread over repeats; n/m: not "
        "measured; CPU ms/1000: CPU time of every process that carries the messages "
        "(brokers on this host included) in the measured window, per 1,000 messages.</p>",
        _summary_table(results),
        breakdown_section(results.runs),
        samples_section(results.runs, lambda r: f"{variant_label(r)} @ {r.load_label}"),
        "<h2>Latency by percentile</h2>",
        f"<div class='chart'>{spectrum_chart(rows)}</div>",
        "<h2>Latency against throughput</h2>",
        "<p>One line per cell over its loads; a dashed line marks a search's knee.</p>",
        f"<div class='chart'>{throughput_chart(rows)}</div>",
        "<h2>Timelines</h2>",
        f"<div class='chart'>{timeline_chart(results.runs)}</div>",
        knees_section(results),
        "<h2>Runs</h2>",
        runs_table(results.runs),
        "<h2>Configuration of every run</h2>",
        "".join(config_section(r) for r in results.runs),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_report(results: Results, path: Path, title: str = "") -> None:
    """``title``: used only when no suite produced the results (the suite's name wins)."""
    atomic_write_text(path, render_html(results, title))
