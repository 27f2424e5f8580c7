"""The results schema (versioned) and how a run's reports become one result.

``results.json`` is ``{"schema": SCHEMA, "runs": [RunResult, ...]}``; the README
documents every field. Counts cover the measured window; warm-up has its own.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.errors import ConfigError
from hopbench.measure.histogram import new_histogram
from hopbench.measure.merge import SendSummary, histogram_from, merge, summarize
from hopbench.measure.series import merge_series
from hopbench.measure.usage import Usage

SCHEMA = "hopbench.results.schema/1"
# Beyond these, the generator and not the system was the limit (see README).
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


def process_result(
    name: str,
    ready: Usage | None,
    end: Usage | None,
    host: str = "local",
    clock: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
    **counts: int,
) -> ProcessResult:
    """A process's row from its usage at ready and at the end (either may be unknown)."""
    cpu = (end.cpu_s if end else 0.0) - (ready.cpu_s if ready else 0.0)
    return ProcessResult(
        name=name,
        cpu_s=round(max(cpu, 0.0), 3),
        peak_rss_mb=round(end.peak_rss_mb if end else 0.0, 1),
        host=host,
        clock=clock,
        machine=machine,
        **counts,
    )


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


def build_result(
    spec: RunSpec,
    *,
    started_at: str,
    workers: list[SendSummary],
    recorders: dict[str, dict[str, Any]],
    processes: list[ProcessResult],
    brokers: dict[str, Any],
    environment: dict[str, Any],
    notes: list[str],
) -> RunResult:
    """workers: what each load worker sent; recorders: process name -> Recorder JSON."""
    topology = spec.resolved
    load = spec.load
    sent, routes = merge(topology, workers, recorders)
    latency, service_time, send_lag = new_histogram(), new_histogram(), new_histogram()
    for route in routes:
        latency.add(route.latency)
        service_time.add(route.service_time)
    for w in workers:
        send_lag.add(histogram_from(w.send_lag))

    measure_start = min((w.measure_start_ns for w in workers), default=0)
    last_sent = max((w.last_sent_ns for w in workers), default=0)
    gap_s = 0.0 if load.closed else 1 / load.rate
    elapsed_s = max(load.duration_s, (last_sent - measure_start) / 1e9 + gap_s)
    achieved = sent.sent / elapsed_s
    completed = sum(r.completed for r in routes)
    lag = summarize(send_lag)
    # A closed loop has no schedule to keep: its rate is whatever the system allows.
    # Sends held back at the explicit in-flight limit are the system pushing back,
    # not the generator falling short: that is reported on its own.
    in_flight_waits = sum(w.in_flight_waits for w in workers)
    unsent = sum(w.unsent for w in workers)
    generator_limited = not load.closed and (
        unsent > 0
        or (
            in_flight_waits == 0
            and (lag["p99"] > SEND_LAG_P99_LIMIT_US or achieved < ACHIEVED_RATE_FLOOR * load.rate)
        )
    )
    notes = list(notes)
    if in_flight_waits:
        notes.append(
            f"sends waited {in_flight_waits} times at the in-flight limit "
            f"({load.max_in_flight} per worker): the system pushed back; latency still "
            "counts from the intended send"
        )
    if unsent:
        notes.append(f"{unsent} messages due in the schedule were never sent")
    if generator_limited:
        notes.append(
            f"the load generator was the limit: send lag p99 {lag['p99']:.0f} µs, "
            f"achieved {achieved:.0f}/s of {load.rate:.0f}/s"
        )
    series = list(recorders.values())
    timeline = [TimePoint(**row) for row in merge_series([r["series"] for r in series])]
    # Throughput is what completed inside the measured window: past capacity an open
    # loop still completes everything eventually, during the grace period.
    in_window = sum(p.completed for p in timeline if 0 <= p.t_s < load.duration_s)
    completion_rate = round(in_window / max(len(routes), 1) / load.duration_s, 1)
    foreign = sum(r.get("foreign", 0) for r in series)
    if foreign:
        notes.append(f"{foreign} messages of another run were received and ignored")

    return RunResult(
        run_id=spec.run_id,
        topology=topology.name,
        source=topology.source,
        mode=topology.mode_label,
        edges=[
            EdgeResult(name=e.name, mode=e.mode, pattern=e.pattern, settings=dict(e.settings))
            for e in topology.edges
        ],
        started_at=started_at,
        target_rate=load.rate,
        achieved_rate=round(achieved, 1),
        completion_rate=completion_rate,
        duration_s=load.duration_s,
        warmup_s=load.warmup_s,
        payload_bytes=load.payload_bytes,
        workers=load.workers,
        load=load.model_dump(mode="json"),
        sent=sent.sent,
        expected=sum(r.expected for r in routes),
        completed=completed,
        errors=sent.errors + sum(p.errors for p in processes),
        lost=sum(r.lost for r in routes),
        duplicated=sum(r.duplicated for r in routes),
        negative_latencies=sum(r.negative for r in routes),
        out_of_range=sum(r.out_of_range for r in routes),
        out_of_order=sum(r.out_of_order for r in routes),
        late=sum(r.late for r in routes),
        late_replies=sum(p.late_replies for p in processes),
        in_flight_waits=in_flight_waits,
        unsent=unsent,
        warmup=Warmup(
            sent=sent.warmup_sent,
            errors=sent.warmup_errors,
            expected=sum(r.warmup_expected for r in routes),
            lost=sum(r.warmup_lost for r in routes),
        ),
        latency_us=Percentiles(**summarize(latency)),
        service_time_us=Percentiles(**summarize(service_time)),
        send_lag_us=Percentiles(**lag),
        generator_limited=generator_limited,
        routes=[
            RouteResult(
                route=r.label,
                recorded_by=sorted(r.recorders),
                expected=r.expected,
                completed=r.completed,
                lost=r.lost,
                duplicated=r.duplicated,
                out_of_order=r.out_of_order,
                late=r.late,
                latency_us=Percentiles(**summarize(r.latency)),
                hops=[
                    HopResult(
                        service=name,
                        transit_us=Percentiles(**summarize(r.hops[name][0])),
                        work_us=Percentiles(**summarize(r.hops[name][1])),
                    )
                    for name in topology.hop_services(r.route)
                    if name in r.hops
                ],
            )
            for r in routes
        ],
        processes=processes,
        timeline=[
            TimePoint(**row) for row in merge_series([r["series"] for r in recorders.values()])
        ],
        histograms={
            "latency": latency.encode().decode("ascii"),
            "service_time": service_time.encode().decode("ascii"),
            "send_lag": send_lag.encode().decode("ascii"),
        },
        brokers=brokers,
        settings=spec.settings.model_dump(mode="json"),
        environment=environment,
        notes=notes,
    )


CSV_COLUMNS = (
    "run_id", "cell", "topology", "mode", "patterns", "target_rate", "achieved_rate",
    "completion_rate", "payload_bytes", "workers", "sent", "expected", "completed", "lost",
    "duplicated", "errors", "late_replies", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
    "mean_us", "service_p50_us", "service_p99_us", "send_lag_p99_us", "generator_limited",
    "cpu_s", "cpu_ms_per_1000", "started_at",
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
    }


def write_csv(runs: list[RunResult], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow(csv_row(run))
    tmp.replace(path)
