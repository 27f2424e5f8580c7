"""The phases of one run, each a function with typed inputs and outputs.

brokers → provision → start (services, then load workers, then clocks) → load
(live progress and faults alongside) → drain → collect → result. The orchestrator
(hopbench.run.orchestrator) is the list of these calls; the in-process test
harness calls the same provision, window, drain and result functions, so the tests
exercise the product, not a copy of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hopbench.brokers.kafka import KafkaCluster
from hopbench.brokers.postgres import PostgresDb, db_services
from hopbench.brokers.procs import ServerProcess, server_process
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.brokers.tansu import TansuBroker
from hopbench.config.deployment import Deployment
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.secrets import redact
from hopbench.config.topology import Topology
from hopbench.measure.merge import SendSummary
from hopbench.measure.usage import Usage, proc_usage
from hopbench.results.build import build_result
from hopbench.results.schema import FaultEvent, ProcessResult, RunResult
from hopbench.transports import provisioning
from hopbench.transports.plan import Provisioning

START_DELAY_NS = 200_000_000  # from "start" to the first send: every process has the command


class KafkaAdmin(Protocol):
    """A Kafka the run can use: the embedded Tansu or a cluster by address."""

    @property
    def bootstrap(self) -> str: ...

    async def provision(self, plan: Provisioning) -> None: ...

    def describe(self) -> dict[str, Any]: ...


# A broker's row among the run's processes, by the mode it carries.
BROKER_PROCESS = {"kafka": "kafka-broker", "rabbitmq": "rabbitmq-server"}


@dataclass
class Brokers:
    """The brokers a run uses: Kafka (embedded Tansu or a cluster by address) and RabbitMQ."""

    kafka: KafkaAdmin | None = None
    rabbit: RabbitMqBroker | None = None
    described: dict[str, Any] = field(default_factory=dict)  # for the results
    # the OS process of each broker, by its row's name: its CPU is the run's too
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    postgres: PostgresDb | None = None  # for services whose work runs queries (work.db)

    @property
    def tansu(self) -> TansuBroker | None:
        """The embedded broker: a process of ours, whose CPU the run counts."""
        return self.kafka if isinstance(self.kafka, TansuBroker) else None

    @property
    def kafka_bootstrap(self) -> str | None:
        return self.kafka.bootstrap if self.kafka is not None else None

    @property
    def rabbitmq_url(self) -> str | None:
        return self.rabbit.url if self.rabbit is not None else None

    def find_servers(self) -> None:
        """Which OS process serves each broker: the embedded one is ours; any other is
        the process listening on the broker's port, if it is on this host."""
        tansu = self.tansu
        if tansu is not None:
            self.servers[BROKER_PROCESS["kafka"]] = ServerProcess(tansu.pid, "tansu")
        elif isinstance(self.kafka, KafkaCluster):
            self.servers[BROKER_PROCESS["kafka"]] = server_process(*self.kafka.address)
        if self.rabbit is not None:
            self.servers[BROKER_PROCESS["rabbitmq"]] = server_process(*self.rabbit.address)
        for name, server in self.servers.items():
            mode = "kafka" if name == BROKER_PROCESS["kafka"] else "rabbitmq"
            self.described[mode]["process"] = server.name or None
            if server.pid is None:
                self.described[mode]["cpu"] = f"not measured: {server.why}"

    def usage(self) -> dict[str, Usage | None]:
        """Each broker process's CPU and memory so far (None: not measured)."""
        return {
            name: proc_usage(server.pid) if server.pid else None
            for name, server in self.servers.items()
        }

    def addresses(self) -> dict[str, str]:
        """Each broker's address by the flag that sets it (to check agents can reach it),
        with no password: it goes into messages."""
        found = {"--kafka-bootstrap": self.kafka.bootstrap} if self.kafka is not None else {}
        if self.rabbit is not None:
            found["--rabbitmq-url"] = redact(self.rabbit.url)
        if self.postgres is not None:
            found["--postgres-url"] = redact(self.postgres.url)
        return found


async def start_brokers(
    topology: Topology,
    deployment: Deployment,
    run_dir: Path,
    run_id: str,
    stack: contextlib.AsyncExitStack,
    say: Callable[[str], None],
    notes: list[str],
) -> Brokers:
    """Start or reach the brokers the topology's modes need, waiting for one that is
    still starting up to --brokers-wait; the stack stops them."""
    brokers = Brokers()
    if "kafka" in topology.modes and deployment.kafka_bootstrap:
        cluster = KafkaCluster(deployment.kafka_bootstrap)
        stack.push_async_callback(cluster.stop)
        await cluster.connect(deployment.brokers_wait_s, say)
        brokers.kafka = cluster
    elif "kafka" in topology.modes:
        tansu = TansuBroker(run_dir / "tansu.log", cluster_id=f"hopbench-{run_id}")
        stack.push_async_callback(tansu.stop)
        say("starting the embedded Kafka broker (Tansu)")
        await tansu.start()
        brokers.kafka = tansu
        notes.append("Kafka is Tansu, memory-only: nothing survives a broker restart")
    if brokers.kafka is not None:
        brokers.described["kafka"] = brokers.kafka.describe()
    if "rabbitmq" in topology.modes:
        rabbit = RabbitMqBroker(deployment.rabbitmq_url)
        stack.push_async_callback(rabbit.close)
        await rabbit.connect(deployment.brokers_wait_s, say)
        brokers.rabbit = rabbit
        brokers.described["rabbitmq"] = rabbit.describe()
    if db_services(topology):
        postgres = PostgresDb(deployment.postgres_url, run_id)
        stack.push_async_callback(postgres.close)  # drops the run's tables
        await postgres.connect(deployment.brokers_wait_s, say)
        brokers.postgres = postgres
    brokers.find_servers()
    return brokers


async def provision(brokers: Brokers, spec: RunSpec) -> None:
    """Create the run's topics, queues and exchanges (removed when the brokers stop)."""
    for name, info in brokers.described.items():
        if name == "postgresql":  # its settings are the services' work.db
            continue
        info["settings"] = broker_settings(name, spec.settings)
    plan = provisioning(spec)
    if brokers.kafka is not None and plan.kafka_topics:
        await brokers.kafka.provision(plan)
    if brokers.rabbit is not None and (plan.rabbitmq_queues or plan.rabbitmq_exchanges):
        await brokers.rabbit.provision(plan)
    if brokers.postgres is not None:
        await brokers.postgres.provision(spec.resolved)
        brokers.described["postgresql"] = brokers.postgres.describe()


def broker_settings(name: str, settings: Settings) -> dict[str, Any]:
    """The settings that shape a broker's numbers, as the results record them."""
    if name == "kafka":
        return {
            "acks": settings.kafka_acks,
            "linger_ms": settings.kafka_linger_ms,
            "batch_bytes": settings.kafka_batch_bytes,
            "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
            "consumer_concurrency": settings.prefetch,
            "idempotence": False,
        }
    return {
        "publisher_confirms": settings.rabbitmq_confirms,
        "confirm_batch": settings.rabbitmq_confirm_batch,
        "durable": settings.rabbitmq_durable,
        "queue_type": settings.rabbitmq_queue_type,
        "prefetch": settings.prefetch,
        "ack": "manual, after the handler finishes",
        "reply": settings.rabbitmq_reply,
    }


@dataclass(frozen=True)
class Window:
    """When the load starts and when its measured part starts, on the run's one clock."""

    start_ns: int  # the schedule's first send (warm-up included)
    origin_ns: int  # the measured window's start: t = 0 in every series

    @classmethod
    def after(cls, load: LoadSpec, delay_ns: int = START_DELAY_NS) -> Window:
        start_ns = time.monotonic_ns() + delay_ns
        return cls(start_ns, start_ns + int(load.warmup_s * 1e9))


class Recording(Protocol):
    """A process that records completions, as the drain sees it (a child or, in the
    tests, a service runtime in this event loop)."""

    async def completed(self) -> int: ...

    def late_after(self, t_ns: int) -> None: ...


async def drain(
    topology: Topology,
    recording: Sequence[Recording],
    delivered: int,
    grace_s: float,
    poll_s: float = 0.05,
) -> bool:
    """Wait until the sinks hold a completion of every message whose send did not
    fail (``delivered``, warm-up included), or the grace period ends; True if they do.

    Completions within the grace period are on time; within a second grace period
    they still count, as `late`; after that the rest is lost (the result counts them
    exactly, from the recorders' bitmaps, and says so in a note)."""
    sinks = {r for r in topology.expected_routes() if r}
    if not sinks:
        return True
    expected = delivered * len(sinks)
    grace_ends = time.monotonic() + grace_s
    late_ends = grace_ends + grace_s
    late = False
    while True:
        counts = await asyncio.gather(*(r.completed() for r in recording))
        if sum(counts) >= expected:
            return True
        now = time.monotonic()
        if now > late_ends:
            return False
        if now > grace_ends and not late:
            late = True
            for process in recording:
                process.late_after(time.monotonic_ns())
        await asyncio.sleep(poll_s)


@dataclass(frozen=True)
class Outcome:
    """One process's share of a run: its row in the results and its recorder."""

    process: ProcessResult
    recorder: dict[str, Any] | None = None  # a broker process records nothing
    cache: dict[str, Any] | None = None  # a service's CacheStats JSON, if its work has a cache


def result(
    spec: RunSpec,
    *,
    started_at: str,
    worker_reports: list[SendSummary],
    outcomes: list[Outcome],
    brokers: dict[str, Any],
    environment: dict[str, Any],
    notes: list[str],
    faults: list[FaultEvent] | None = None,
) -> RunResult:
    """The run's result, from every process's outcome and the load workers' reports."""
    return build_result(
        spec,
        started_at=started_at,
        workers=worker_reports,
        recorders={o.process.name: o.recorder for o in outcomes if o.recorder is not None},
        processes=[o.process for o in outcomes],
        brokers=brokers,
        environment=environment,
        notes=notes,
        faults=faults,
        caches={o.process.name: o.cache for o in outcomes if o.cache is not None},
    )
