"""Run a whole topology in one event loop: the logic tests' harness.

With ``Brokers()`` left empty it runs on the in-memory transport (unit tests of
routing, completion and counting); given real broker addresses it runs the real
transports in-process (integration tests). One set of test bodies serves both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.topology import LOADGEN, Topology
from hopbench.loadgen.process import build_worker, schedule_for
from hopbench.loadgen.worker import LoadWorker
from hopbench.results.schema import ProcessResult, RunResult
from hopbench.run import phases
from hopbench.run.provision import allocate_endpoints
from hopbench.run.tls import tls_for
from hopbench.services.process import build_service
from hopbench.services.runtime import ServiceRuntime
from hopbench.transports.base import connection_counts
from hopbench.transports.context import TransportContext
from hopbench.transports.inmemory import HUBS

KafkaBroker = phases.KafkaAdmin  # Tansu, or a Kafka at an address (a testcontainer)


@dataclass(frozen=True)
class Live:
    """A run in progress, as a ``during`` callback sees it."""

    spec: RunSpec
    services: list[ServiceRuntime]
    workers: list[LoadWorker]


@dataclass
class Brokers:
    """Real brokers to use; with neither, everything runs on the in-memory transport."""

    kafka: KafkaBroker | None = None
    rabbitmq_url: str | None = None
    real: bool = False


async def run_in_process(
    topology: Topology,
    load: LoadSpec,
    brokers: Brokers | None = None,
    settings: Settings | None = None,
    settle_s: float = 0.2,
    linger_s: float = 0.0,
    inspect: Callable[[list[ServiceRuntime]], None] = lambda services: None,
    during: Callable[[Live], Awaitable[None]] | None = None,
) -> RunResult:
    """settle_s: at most this long for the sinks to complete; linger_s: then this long
    for stragglers (late replies); inspect: sees the services before they close;
    during: runs alongside the load (from its start; awaited before the drain).

    Provisioning, the load window, the drain and the result are the orchestrator's own
    phases (hopbench.run.phases); only the processes differ: runtimes in this loop."""
    brokers = brokers or Brokers()
    override = None if brokers.real else "inmemory"
    settings = settings or Settings()
    endpoints = allocate_endpoints(topology) if brokers.real else {}
    spec = RunSpec(
        run_id=uuid.uuid4().hex[:8],
        topology=topology.to_dict(),
        settings=settings,
        load=load,
        endpoints=endpoints,
        kafka_bootstrap=brokers.kafka.bootstrap if brokers.kafka else None,
        rabbitmq_url=brokers.rabbitmq_url,
        tls=tls_for(topology, settings, endpoints) if brokers.real else None,
    )
    rabbit = RabbitMqBroker(brokers.rabbitmq_url) if brokers.rabbitmq_url else None
    if rabbit is not None and "rabbitmq" in topology.modes:
        await rabbit.connect()
    await phases.provision(phases.Brokers(kafka=brokers.kafka, rabbit=rabbit), spec)
    services = [
        build_service(TransportContext.of(spec, name, replica), override)
        for name, svc in topology.services.items()
        for replica in range(svc.replicas)
    ]
    workers = [
        build_worker(TransportContext.of(spec, LOADGEN, w), load, override)
        for w in range(load.workers)
    ]
    notes: list[str] = []
    try:
        for service in services:
            await service.start()
        for worker in workers:
            await worker.transport.start()
        window = phases.Window.after(load, delay_ns=10_000_000)
        for service in services:
            service.begin(window.start_ns, window.origin_ns)
        drives = asyncio.gather(
            *(w.drive(schedule_for(load, w.worker, window.start_ns)) for w in workers)
        )
        if during is None:
            reports = await drives
        else:
            reports, _ = await asyncio.gather(drives, during(Live(spec, services, workers)))
        recording = [RuntimeRecording(s) for s in services if s.records_completion]
        delivered = sum(r.summary().delivered for r in reports)
        await phases.drain(topology, recording, delivered, settle_s)
        await asyncio.sleep(linger_s)
        inspect(services)
    finally:
        for worker in workers:
            await worker.transport.close()
        for service in services:
            await service.close()
        HUBS.pop(spec.run_id, None)
        if rabbit is not None:
            await rabbit.close()
    outcomes = [
        phases.Outcome(
            ProcessResult(
                name=f"{s.spec.name}/{s.replica}",
                handled=s.handled,
                errors=s.errors,
                late_replies=s.late_replies,
                wire=s.wire(),
                rejected=s.rejected,
                first_rejected=s.first_rejected,
                **s.connection_counts(),
                lock_waits=s.limits.lock_waits,
                lock_retries=s.limits.lock_retries,
            ),
            s.recorder.to_json(),
            None if s.cache is None else s.cache.stats.to_json(),
        )
        for s in services
    ] + [
        phases.Outcome(
            ProcessResult(
                name=f"loadgen/{w.worker}",
                late_replies=w.transport.late_replies,
                wire=w.transport.wire.to_json(),
                rejected=w.transport.rejected,
                first_rejected=w.transport.admission.first,
                **connection_counts([w.transport]),
            ),
            w.recorder.to_json(),
        )
        for w in workers
    ]
    return phases.result(
        spec,
        started_at="",
        worker_reports=[r.summary() for r in reports],
        outcomes=outcomes,
        brokers={},
        environment={},
        notes=notes,
    )


class RuntimeRecording:
    """A service runtime in this event loop, as the drain phase sees it."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    async def completed(self) -> int:
        return self.runtime.recorder.completed_count()

    def late_after(self, t_ns: int) -> None:
        self.runtime.recorder.late_after_ns = t_ns
