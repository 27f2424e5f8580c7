"""The results schema (versioned): what one run's result and a results file hold.

``results.json`` is ``{"schema": SCHEMA, "runs": [RunResult, ...]}``; docs/results.md
documents every field. Counts cover the measured window; warm-up has its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from hopbench.config.runspec import LoadSpec
from hopbench.errors import ConfigError
from hopbench.results.sampled import Bottleneck, Samples

SCHEMA = "hopbench.results/1"
# Beyond these, the generator and not the system was the limit (docs/measurement.md).
SEND_LAG_P99_LIMIT_US = 1000
ACHIEVED_RATE_FLOOR = 0.99


class Percentiles(BaseModel):
    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float


class EdgeResult(BaseModel):
    name: str
    mode: str
    pattern: str
    settings: dict[str, Any] = {}  # this edge's own settings, on top of the run's


class HopResult(BaseModel):
    service: str
    transit_us: Percentiles  # from the previous send (the load generator's, or a hop's)
    work_us: Percentiles  # in the service, until it forwarded or replied


class TimePoint(BaseModel):
    """One second of the run; t_s counts from the start of the measured window."""

    t_s: int
    sent: int
    completed: int
    errors: int
    in_flight: int  # the most requests outstanding at once, summed over load workers
    p50_us: float
    p99_us: float
    max_us: float


class RouteResult(BaseModel):
    route: str  # the services a message passed to reach its recorder
    recorded_by: list[str]
    expected: int
    completed: int
    lost: int
    duplicated: int
    out_of_order: int
    late: int
    latency_us: Percentiles
    hops: list[HopResult]


class ProcessResult(BaseModel):
    name: str  # "gateway/0", "loadgen/0", "kafka-broker"
    handled: int = 0
    errors: int = 0
    late_replies: int = 0  # replies that arrived after their caller gave up
    cpu_s: float = 0.0  # CPU seconds (user + system) from ready to the end of the run
    peak_rss_mb: float = 0.0  # an agent's is its peak over every run it has served
    host: str = "local"  # "local" (a child of the orchestrator) or the agent's address
    # this process's clock against the orchestrator's (hopbench.control.child.ClockReading)
    clock: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None  # an agent's host (local ones: the run's environment)


class Warmup(BaseModel):
    sent: int
    errors: int
    expected: int
    lost: int


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    cell: str = ""  # the suite cell (compare) this run belongs to
    topology: str
    source: str
    mode: str  # the edges' mode, or "mixed"
    edges: list[EdgeResult]
    started_at: str  # wall clock, ISO 8601 UTC
    target_rate: float
    achieved_rate: float
    completion_rate: float
    duration_s: float
    warmup_s: float
    payload_bytes: int
    workers: int
    load: dict[str, Any]  # the whole load model: arrival, seed, concurrency, think time...
    sent: int
    expected: int
    completed: int
    errors: int
    lost: int
    duplicated: int
    negative_latencies: int
    out_of_range: int
    out_of_order: int
    late: int
    late_replies: int  # broker request-reply: replies after the caller's timeout, dropped
    in_flight_waits: int
    unsent: int  # due in the schedule but never sent: the load generator fell behind
    warmup: Warmup
    latency_us: Percentiles
    service_time_us: Percentiles
    send_lag_us: Percentiles
    generator_limited: bool
    routes: list[RouteResult]
    processes: list[ProcessResult]
    timeline: list[TimePoint]
    histograms: dict[str, str]  # encoded HdrHistograms: latency, service_time, send_lag
    brokers: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    notes: list[str]
    # once a second: queues, lag, in-flight, CPU per process, the host's run queue
    samples: Samples | None = None
    bottleneck: Bottleneck | None = None  # past the knee: the queue that grew, what ran out

    @property
    def load_label(self) -> str:
        return LoadSpec.model_validate(self.load).label


class Results(BaseModel):
    schema_: str = SCHEMA
    runs: list[RunResult] = []
    # with --repeat: median, min and max of each metric over a cell's runs
    cells: list[dict[str, Any]] = []
    # with --find-max: the highest rate that kept up, and every probe as evidence
    max_sustainable: list[dict[str, Any]] = []

    model_config = ConfigDict(populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"schema_"})
        return {"schema": SCHEMA, **data}

    @classmethod
    def read(cls, path: Path) -> Results:
        """A results file written by this version (for compare --resume)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read earlier results: {exc}") from exc
        if data.get("schema") != SCHEMA:
            raise ConfigError(
                f"{path}: schema {data.get('schema')!r}, not {SCHEMA}: use another --out"
            )
        return cls.model_validate({k: v for k, v in data.items() if k != "schema"})

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.dump(), indent=2))
        tmp.replace(path)  # never a half-written results file
