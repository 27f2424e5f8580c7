"""results.csv: one flat row per run, for spreadsheets and pandas."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hopbench.config.outdir import atomic_writer
from hopbench.results.cells import variant_label
from hopbench.results.schema import RunResult

CSV_COLUMNS = (
    "run_id", "cell", "status", "failure", "probe", "topology", "mode", "variant", "patterns",
    "measures", "target_rate", "achieved_rate", "completion_rate", "payload_bytes", "replicas",
    "workers", "sent", "expected", "completed", "lost", "duplicated", "errors", "unsent",
    "late_replies", "rejected", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us",
    "service_p50_us", "service_p99_us", "send_lag_p99_us", "generator_limited",
    "generator_cause", "slo_met",
    "cpu_s", "cpu_ms_per_1000", "started_at", "bottleneck",
)  # fmt: skip


def csv_row(run: RunResult) -> dict[str, Any]:
    """One flat row per run, for spreadsheets and pandas (an empty cell: not measured)."""
    cpus = [p.cpu_s for p in run.processes]
    cpu_s = None if None in cpus else round(sum(c for c in cpus if c is not None), 3)
    lat = run.latency_us
    return {
        "run_id": run.run_id,
        "cell": run.cell,
        "status": run.status,
        "failure": run.failure or "",
        "probe": run.probe,
        "topology": run.topology,
        "mode": variant_label(run),
        "variant": run.variant or run.mode,
        "patterns": "+".join(sorted({e.pattern for e in run.edges})),
        "measures": " + ".join(r.measures for r in run.routes),
        "replicas": " ".join(f"{name}={n}" for name, n in run.replicas.items()),
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
        "unsent": run.unsent,
        "late_replies": run.late_replies,
        "rejected": run.rejected,
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
        "generator_cause": run.generator_limit.cause if run.generator_limit else "",
        "slo_met": "" if run.slo_met is None else run.slo_met,
        "cpu_s": "" if cpu_s is None else cpu_s,
        "cpu_ms_per_1000": "" if run.cpu_ms_per_1000 is None else run.cpu_ms_per_1000,
        "started_at": run.started_at,
        "bottleneck": run.bottleneck.text if run.bottleneck is not None else "",
    }


def write_csv(runs: list[RunResult], path: Path) -> None:
    with atomic_writer(path, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow(csv_row(run))
