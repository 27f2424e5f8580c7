"""The results schema (versioned): what one run's result and a results file hold.

``results.json`` is ``{"schema": SCHEMA, "runs": [RunResult, ...]}``; docs/results.md
documents every field. Counts cover the measured window; warm-up has its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from hopbench.config.outdir import atomic_write_text
from hopbench.config.runspec import LoadSpec
from hopbench.errors import ConfigError
from hopbench.results.sampled import Bottleneck, GeneratorLimit, LateSends, Samples

SCHEMA = "hopbench.results/3"
# Beyond these, the generator and not the system was the limit (docs/measurement.md).
SEND_LAG_P99_LIMIT_US = 1000
ACHIEVED_RATE_FLOOR = 0.99


def short_of(rate: float, target: float, window_s: float) -> bool:
    """Whether a rate measured over window_s fell short of target: under
    ACHIEVED_RATE_FLOOR of it by more than one message. A window holds a whole number
    of messages: 3 s at 12.5/s holds 37 (12.33/s), and one missing message is 1 % of
    only 100."""
    return rate < ACHIEVED_RATE_FLOOR * target - 1 / window_s


class Percentiles(BaseModel):
    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float


NO_SAMPLES = Percentiles(count=0, p50=0, p90=0, p99=0, p999=0, max=0, mean=0)


class WireResult(BaseModel):
    """What the senders wrote for one edge's messages over the whole run, warm-up
    included (docs/results.md, "Bytes on the wire"): the envelope's body as encoded,
    and as written after compression; not the protocol's headers (HTTP, AMQP frames,
    gRPC's, TCP/IP, TLS)."""

    encoding: str
    compression: str
    messages: int  # requests or publishes sent (a publish-subscribe publish once)
    encoded_bytes: int  # their encoded size, before compression
    wire_messages: int  # of those, the ones whose written size was seen
    wire_bytes: int  # what was written for them, after compression
    replies: int = 0  # replies sent back over the edge
    reply_encoded_bytes: int = 0
    reply_wire_messages: int = 0
    reply_wire_bytes: int = 0
    encoded_per_message: float | None = None  # encoded_bytes / messages
    # wire_bytes / wire_messages; None: not seen (gRPC compresses out of sight)
    wire_per_message: float | None = None
    reply_encoded_per_message: float | None = None
    reply_wire_per_message: float | None = None


class EdgeResult(BaseModel):
    name: str
    mode: str
    pattern: str
    settings: dict[str, Any] = {}  # this edge's own settings, on top of the run's
    # the client library its callers ran (HTTP: http_client as resolved; RabbitMQ:
    # rabbitmq_client); None for a mode without a choice
    client: str | None = None
    wire: WireResult | None = None  # bytes per message; None: nothing was counted


class HopResult(BaseModel):
    """One service on a route: each part of its time, over every message through it
    (docs/measurement.md, "Where the time goes")."""

    service: str
    transit_us: Percentiles  # from the previous send until its transport had the message
    wait_us: Percentiles = NO_SAMPLES  # from there until a handler was free to start it
    work_us: Percentiles  # its own work: from then until it forwarded or replied
    # its own time after its work on this route: after the reply a gather needed last,
    # publishing, building its reply, and the reply's trip back to its caller
    rest_us: Percentiles = NO_SAMPLES


class HopShare(BaseModel):
    """One service's share of its route's mean latency, µs per completion: the sum of
    each part while the service was on the critical path, over every completion."""

    service: str
    transit_us: float
    wait_us: float
    work_us: float
    rest_us: float
    on_path: float  # the fraction of completions whose critical path passed it


class Breakdown(BaseModel):
    """Where a route's mean latency goes: send lag + every share = the mean − residual."""

    completions: int  # completions split into parts
    latency_mean_us: float  # the route's latency_us.mean
    send_lag_us: float  # the load generator's share: intended → actual send
    hops: list[HopShare]  # in route order
    # latency_mean_us − send_lag_us − the hops' shares: the parts of each message add up
    # exactly, so this is the histogram's rounding (whole µs, 3 significant figures)
    residual_us: float


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
    measures: str = ""  # "round trip", or "one-way to <the service that recorded it>"
    recorded_by: list[str]
    expected: int
    completed: int
    lost: int
    duplicated: int
    out_of_order: int
    late: int
    latency_us: Percentiles
    hops: list[HopResult]
    breakdown: Breakdown | None = None  # None: no completion carried hop stamps


class ProcessResult(BaseModel):
    name: str  # "gateway/0", "loadgen/0", "kafka-broker", "rabbitmq-server"
    handled: int = 0
    errors: int = 0
    # the first of its errors in words, and when (s from the measured window's start)
    first_error: str | None = None
    first_error_s: float | None = None
    died: str | None = None  # why it ended before its report, if it did
    late_replies: int = 0  # replies that arrived after their caller gave up
    # per out-edge: messages and bytes this process wrote (hopbench.transports.codec)
    wire: dict[str, dict[str, int]] = {}
    # messages it received and rejected (undecodable, foreign or impossible), the first
    rejected: int = 0
    first_rejected: str | None = None
    # HTTP and gRPC edges: connections this process's clients opened, and of the TLS
    # handshakes they finished (HTTP; gRPC's are not visible), how many resumed a session
    connections_opened: int = 0
    tls_handshakes: int = 0
    tls_resumed: int = 0
    lock_waits: int = 0  # a service's pessimistic lock: messages that found their key held
    lock_retries: int = 0  # its optimistic lock: work redone after a failed compare-and-set
    # CPU seconds (user + system) inside the measured window; None: not measured
    cpu_s: float | None = None
    cpu_run_s: float | None = None  # from ready to the end of the run (warm-up, grace too)
    peak_rss_mb: float = 0.0  # an agent's is its peak over every run it has served
    host: str = "local"  # "local" (a child of the orchestrator) or the agent's address
    # this process's clock against the orchestrator's (hopbench.control.child.ClockReading)
    clock: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None  # an agent's host (local ones: the run's environment)
    # a service whose work runs queries: their count, time waiting for a pool connection
    # and running (ms: mean, p50, p99, max), the table's shape (docs/results.md)
    db: dict[str, Any] | None = None


class CacheResult(BaseModel):
    """One service's cache (work.cache) over the measured window, its replicas merged."""

    service: str
    store: str  # local (per replica) or redis (shared by the replicas)
    ttl_ms: float
    keys: int
    skew: float  # the Zipf exponent of key popularity
    update_rate: float  # changes of each key's source value per second
    lookups: int  # one per message handled
    hits: int
    misses: int
    hit_ratio: float  # hits / lookups
    stale: int  # hits that served a value the source had changed since it was loaded
    stale_ratio: float  # stale / hits
    hit_us: Percentiles  # a hit's lookup (with redis: a round trip)
    miss_us: Percentiles  # a miss's lookup, the miss's work and storing the value
    age_us: Percentiles  # the age of the values hits served: now − when loaded


class FaultEvent(BaseModel):
    """A fault injected on purpose (--fault), or a broker of the run's own that died:
    what happened and when (s from the measured window's start)."""

    fault: str  # as given, e.g. "kill:worker/0@2s+restart"; "" for a death nobody asked for
    target: str  # "worker/0", "kafka"
    t_s: float
    what: str  # in words, e.g. "worker/0 (pid 4711) killed with SIGKILL"


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
    variant: str = ""  # what was compared: a suite's variant, else the edges' modes
    edges: list[EdgeResult]
    replicas: dict[str, int] = {}  # service -> replicas
    status: Literal["ok", "failed"] = "ok"
    failure: str | None = None  # a failed run's first cause, in words
    probe: bool = False  # a --find-max probe: evidence of the knee, not a variant
    slo_p99_ms: float | None = None  # the SLO the run was judged against, if any
    slo_met: bool | None = None
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
    # received and rejected, every process: undecodable, of another run, or impossible
    # for the schedule; never recorded (dead-lettered where a broker carried them)
    rejected: int = 0
    in_flight_waits: int
    unsent: int  # due in the schedule but never sent: the load generator fell behind
    warmup: Warmup
    latency_us: Percentiles
    service_time_us: Percentiles
    send_lag_us: Percentiles
    # open loop: the sends over 1 ms late and where that time went; None: closed loop
    late_sends: LateSends | None = None
    generator_limited: bool
    routes: list[RouteResult]
    processes: list[ProcessResult]
    timeline: list[TimePoint]
    histograms: dict[str, str]  # encoded HdrHistograms: latency, service_time, send_lag
    brokers: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    notes: list[str]
    faults: list[FaultEvent] = []  # injected faults and broker deaths, in time order
    # CPU of every process that carries the messages inside the measured window, per
    # 1,000 messages completed in it; None when a process's CPU was not measured
    cpu_ms_per_1000: float | None = None
    # once a second: queues, lag, in-flight, CPU per process, the host's run queue
    samples: Samples | None = None
    bottleneck: Bottleneck | None = None  # past the knee: the queue that grew, what ran out
    caches: list[CacheResult] = []  # per service whose work has a cache
    # when generator_limited: whether the generator or the crowded host was the cause
    generator_limit: GeneratorLimit | None = None

    @property
    def load_label(self) -> str:
        return LoadSpec.model_validate(self.load).label

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class Results(BaseModel):
    schema_: str = SCHEMA
    runs: list[RunResult] = []
    # with --repeat: median, min and max of each metric over a cell's runs
    cells: list[dict[str, Any]] = []
    # with --find-max: the highest rate that kept up, and every probe as evidence
    max_sustainable: list[dict[str, Any]] = []
    # from `hopbench compare`: the suite's name and description, the report's title
    suite: dict[str, str] = {}

    model_config = ConfigDict(populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"schema_"})
        return {"schema": SCHEMA, **data}

    @classmethod
    def read(cls, path: Path) -> Results:
        """A results file written by this version (compare --resume, report)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read results: {exc}") from exc
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema != SCHEMA:
            raise ConfigError(
                f"{path}: results of schema {schema!r}; this hopbench reads {SCHEMA} only "
                "(docs/results.md says what changed). Run the command again with another "
                "--out to measure afresh"
            )
        try:
            return cls.model_validate({k: v for k, v in data.items() if k != "schema"})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(map(str, err["loc"]))
            raise ConfigError(f"{path}: {where}: {err['msg']}; not a results file") from None

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.dump(), indent=2))  # never half-written
