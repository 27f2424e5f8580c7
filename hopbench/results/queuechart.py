"""Where the queue builds, drawn: a run's per-second samples on the latency timeline's
time axis, as one SVG of three panels (p99 latency; queue depth, lag and in-flight;
CPU per process and the host's run queue), and the report's section of them.
"""

from __future__ import annotations

import html
import io
from typing import Any

from hopbench.results.sampled import Samples
from hopbench.results.schema import RunResult

MAX_QUEUES = 8  # the deepest ones; the rest are in results.json
MAX_RUNS = 12  # charts in one report; runs with a bottleneck first


def samples_chart(run: RunResult, title: str) -> str:
    """Latency, queues and CPU of one run over time (an inline SVG), or "" unsampled."""
    samples = run.samples
    if samples is None or not samples.t_s:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, queues, cpu) = plt.subplots(
        3, 1, figsize=(8, 7.5), sharex=True, height_ratios=[1, 1.3, 1.3]
    )
    figure.suptitle(title, fontsize="medium")
    _latency(latency, run)
    _queues(queues, samples)
    _cpu(cpu, samples)
    for axes in (latency, queues, cpu):
        axes.grid(True, alpha=0.3)
        axes.axvspan(0, run.duration_s, color="#4a90d9", alpha=0.06, lw=0)
        if run.bottleneck is not None and run.bottleneck.queue is not None:
            axes.axvline(run.bottleneck.queue.from_t_s, color="#c0392b", ls="--", lw=1)
    cpu.set_xlabel("seconds from the start of the measured window (shaded); warm-up < 0")
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _latency(axes: Any, run: RunResult) -> None:
    points = [p for p in run.timeline if p.p99_us > 0]
    axes.plot([p.t_s + 0.5 for p in points], [p.p99_us / 1000 for p in points], marker=".")
    axes.set_ylabel("p99, ms")
    if points:
        axes.set_yscale("log")


def _queues(axes: Any, samples: Samples) -> None:
    """The deepest queues: broker depth and lag solid, in-flight and backlog dashed."""
    ranked = sorted(samples.queues, key=lambda q: -max((v or 0.0) for v in q.values))
    shown = [q for q in ranked if any(v for v in q.values)][:MAX_QUEUES]
    for queue in shown:
        style = "-" if queue.kind in ("broker_queue", "consumer_lag") else "--"
        values = [float("nan") if v is None else v for v in queue.values]
        axes.plot(samples.t_s, values, style, marker=".", label=queue.name)
    axes.set_ylabel("messages waiting")
    if shown:
        axes.legend(fontsize="x-small", loc="upper left")
    else:
        axes.text(0.5, 0.5, "no queue above 0", transform=axes.transAxes, ha="center")


def _cpu(axes: Any, samples: Samples) -> None:
    """CPU per process in % of one core; the host's CPUs (all cores) dotted."""
    for process in samples.processes:
        if not any(process.cpu):
            continue
        values = [float("nan") if v is None else v * 100 for v in process.cpu]
        axes.plot(samples.t_s, values, marker=".", label=process.name)
    host = [float("nan") if v is None else v * 100 for v in samples.host_cpu]
    axes.plot(samples.t_s, host, ":", color="black", label=f"host, all {samples.cores} cores")
    axes.set_ylabel("CPU, % of one core")
    axes.legend(fontsize="x-small", loc="upper left", ncol=2)
    runnable = axes.twinx()
    runnable.plot(samples.t_s, samples.run_queue, color="grey", alpha=0.5, lw=1)
    runnable.axhline(samples.cores, color="grey", alpha=0.4, ls=":", lw=1)
    runnable.set_ylim(bottom=0)
    runnable.set_ylabel("tasks runnable on the host (grey)", fontsize="small")


def samples_section(runs: list[RunResult], label: Any) -> str:
    """The report's section: per run, its bottleneck in words and its chart.
    ``label`` names a run (the report's own variant and load)."""
    sampled = [r for r in runs if r.samples is not None and r.samples.t_s]
    if not sampled:
        return ""
    sampled.sort(key=lambda r: r.bottleneck is None)
    parts = [
        "<h2>Where the queue builds</h2>",
        "<p>Sampled once a second: messages waiting in each broker queue, consumer "
        "group and process (in-flight calls, handlers, the load generator's backlog), "
        "and CPU per process, on the latency timeline's axis. A red dashed line marks "
        "when the bottleneck's queue began to grow.</p>",
    ]
    for run in sampled[:MAX_RUNS]:
        name = f"{label(run)} — run {run.run_id}"
        verdict = run.bottleneck.text if run.bottleneck is not None else "kept up"
        parts.append(f"<h3>{html.escape(name)}</h3><p><b>{html.escape(verdict)}</b></p>")
        parts.append(f"<div class='chart'>{samples_chart(run, name)}</div>")
    if len(sampled) > MAX_RUNS:
        parts.append(f"<p>{len(sampled) - MAX_RUNS} more sampled runs: in results.json.</p>")
    return "\n".join(parts)
