"""results.csv: one flat row per run, for spreadsheets and pandas."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hopbench.results.schema import RunResult

CSV_COLUMNS = (
    "run_id", "cell", "topology", "mode", "patterns", "target_rate", "achieved_rate",
    "completion_rate", "payload_bytes", "workers", "sent", "expected", "completed", "lost",
    "duplicated", "errors", "late_replies", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
    "mean_us", "service_p50_us", "service_p99_us", "send_lag_p99_us", "generator_limited",
    "cpu_s", "cpu_ms_per_1000", "started_at", "bottleneck",
)  # fmt: skip


def cpu_ms_per_1000(run: RunResult) -> float:
    """Every process's CPU (services, load workers, broker), from ready to the end of
    the run, per 1,000 messages sent in that time (warm-up included, as the CPU is)."""
    messages = run.sent + run.warmup.sent
    return sum(p.cpu_s for p in run.processes) * 1e6 / messages if messages else 0.0


def csv_row(run: RunResult) -> dict[str, Any]:
    """One flat row per run, for spreadsheets and pandas."""
    cpu_s = sum(p.cpu_s for p in run.processes)
    lat = run.latency_us
    return {
        "run_id": run.run_id,
        "cell": run.cell,
        "topology": run.topology,
        "mode": run.mode,
        "patterns": "+".join(sorted({e.pattern for e in run.edges})),
        "target_rate": run.target_rate,
        "achieved_rate": run.achieved_rate,
        "completion_rate": run.completion_rate,
        "payload_bytes": run.payload_bytes,
        "workers": run.workers,
        "sent": run.sent,
        "expected": run.expected,
        "completed": run.completed,
        "lost": run.lost,
        "duplicated": run.duplicated,
        "errors": run.errors,
        "late_replies": run.late_replies,
        "p50_us": lat.p50,
        "p90_us": lat.p90,
        "p99_us": lat.p99,
        "p999_us": lat.p999,
        "max_us": lat.max,
        "mean_us": lat.mean,
        "service_p50_us": run.service_time_us.p50,
        "service_p99_us": run.service_time_us.p99,
        "send_lag_p99_us": run.send_lag_us.p99,
        "generator_limited": run.generator_limited,
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_1000": round(cpu_ms_per_1000(run), 1),
        "started_at": run.started_at,
        "bottleneck": run.bottleneck.text if run.bottleneck is not None else "",
    }


def write_csv(runs: list[RunResult], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow(csv_row(run))
    tmp.replace(path)
