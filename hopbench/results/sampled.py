"""What a run sampled once a second (``samples``), and the bottleneck named from it
(``bottleneck``): the results schema's part for where the queue builds.

Columns, not rows: ``t_s`` holds the sample times, and every series holds one value
per time, None where that value could not be read (a process that did not answer, a
broker that refused): a missing value is never a 0. docs/results.md lists the fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

QueueKind = Literal[
    "broker_queue", "consumer_lag", "calls", "handling", "backlog", "db_waiting", "db_active"
]


class QueueSeries(BaseModel):
    """One place where messages wait, over time."""

    name: str  # e.g. "loadgen/0 -> busy (http)", "rabbitmq hb-1f2e-loadgen-sink"
    kind: QueueKind
    # broker_queue: messages ready in a RabbitMQ queue; consumer_lag: a Kafka consumer
    # group's log end offset − committed offset; calls: requests (or publishes) a
    # process sent over an edge and that are not answered yet; handling: messages
    # inside a service replica's handlers, on average since the previous sample;
    # backlog: messages due in a load worker's schedule and not yet sent; db_waiting:
    # a replica's queries waiting for a connection of its pool (work.db); db_active: the
    # run's queries of one service the database server is running (pg_stat_activity)
    holder: str  # who holds it: a process ("gateway/0"), or the broker ("rabbitmq")
    waits_for: str  # the service that would take it off (loadgen for its backlog)
    edge: str = ""  # the edge it waits on, "a->b"
    mode: str = ""
    values: list[float | None]
    note: str = ""  # why values are missing, e.g. "not supported by Tansu"


class ProcessSeries(BaseModel):
    """One OS process (or agent) of the run, over time."""

    name: str  # "busy/0", "loadgen/0", "kafka-broker", "rabbitmq-server", "orchestrator"
    pid: int | None = None  # None: an agent on another host (its CPU is its own report)
    cpu: list[float | None]  # share of one core since the previous sample (1.0 = a core)
    state: list[str]  # R running, S sleeping, T stopped, ...; "?" not read
    # times per second its main thread went to sleep (0: its event loop never ran dry)
    sleeps_per_s: list[float | None] = []
    # share of the time its main thread was runnable but waiting for a CPU (schedstat's
    # run delay; 0.1 = 100 ms a second): delayed by the host, not by its own work
    waited: list[float | None] = []


class Samples(BaseModel):
    interval_s: float
    t_s: list[float]  # when each sample was taken, from the measured window's start
    cores: int
    host_cpu: list[float | None]  # share of every core busy since the previous sample
    run_queue: list[int]  # entities runnable on the host (the sampler itself excluded)
    cpu_pressure: list[float | None]  # PSI "some avg10", %; None: no PSI on this kernel
    queues: list[QueueSeries]
    processes: list[ProcessSeries]
    sampler_cpu_s: float  # the orchestrator's CPU during the sampling ticks (an upper bound)
    notes: list[str] = []


class Growth(BaseModel):
    """How a queue grew: a fitted slope over the measured window, and when it began."""

    queue: str
    kind: QueueKind
    holder: str
    waits_for: str
    edge: str = ""
    mode: str = ""
    per_s: float  # Theil-Sen slope over the measured window, messages per second
    from_t_s: float  # when it started to rise
    peak: float


class Saturation(BaseModel):
    """The resource that ran out."""

    kind: Literal["cpu", "stopped", "host_cpu", "concurrency", "none"]
    name: str  # a process ("busy/0"), "host", or "" for none
    cpu: float | None = None  # its mean share of a core while the queue grew
    detail: str


class Bottleneck(BaseModel):
    reason: str  # why the run did not keep up (hopbench.run.sweep.verdict)
    queue: Growth | None  # the queue that grew first; None: none grew measurably
    resource: Saturation
    text: str  # both in words, e.g. "busy/0 at 99 % CPU; its HTTP in-flight grew ..."


class LateSends(BaseModel):
    """The measured sends of an open loop over 1 ms behind schedule, every load worker,
    and where the time the loops were behind went (hopbench/measure/lateness.py)."""

    sends: int
    behind_us: float  # the time the loops were behind on their account
    waited_us: float | None  # of it: the loop runnable, waiting for a CPU; None: not read
    gc_us: float  # of it: garbage collection in the load worker


class GeneratorLimit(BaseModel):
    """Why an open loop's sends fell behind their schedule (``generator_limited``):
    the load generator's own CPU, or a host too crowded to run it on time."""

    # generator: a load worker was at saturation, or late with CPU to spare;
    # host: the host was busy and the load workers waited for a CPU;
    # unknown: the run has no samples to tell
    cause: Literal["generator", "host", "unknown"]
    worker_cpu: float | None = None  # the busiest load worker's mean share of a core
    worker_waited: float | None = None  # its main thread's share of time waiting for a CPU
    host_cpu: float | None = None  # share of every core busy, mean over the window
    run_queue: float | None = None  # tasks runnable on the host, mean
    cpu_pressure: float | None = None  # PSI some avg10 %, mean; None: no PSI
    # shares of the time the late sends were behind (LateSends): waiting for a CPU, in
    # garbage collection; None when not measured
    late_waited: float | None = None
    late_gc: float | None = None
    detail: str
