"""Run a whole topology in one event loop: the logic tests' harness.

With ``Brokers()`` left empty it runs on the in-memory transport (unit tests of
routing, completion and counting); given real broker addresses it runs the real
transports in-process (integration tests). One set of test bodies serves both.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.topology import LOADGEN, Topology
from hopbench.loadgen.process import build_worker, schedule_for
from hopbench.results.schema import ProcessResult, RunResult, build_result
from hopbench.run.provision import allocate_endpoints, exchanges, queues, topics
from hopbench.services.process import build_service
from hopbench.services.runtime import ServiceRuntime
from hopbench.transports.base import Process
from hopbench.transports.inmemory import HUBS


class KafkaBroker(Protocol):
    """Tansu, or a Kafka at an address (a testcontainer)."""

    @property
    def bootstrap(self) -> str: ...

    async def create_topics(self, partitions: dict[str, int]) -> None: ...


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
) -> RunResult:
    """settle_s: at most this long for the sinks to complete; linger_s: then this long
    for stragglers (late replies); inspect: sees the services before they close."""
    brokers = brokers or Brokers()
    override = None if brokers.real else "inmemory"
    spec = RunSpec(
        run_id=uuid.uuid4().hex[:8],
        topology=topology.to_dict(),
        settings=settings or Settings(),
        load=load,
        endpoints=allocate_endpoints(topology) if brokers.real else {},
        kafka_bootstrap=brokers.kafka.bootstrap if brokers.kafka else None,
        rabbitmq_url=brokers.rabbitmq_url,
    )
    rabbit = RabbitMqBroker(brokers.rabbitmq_url) if brokers.rabbitmq_url else None
    if brokers.kafka is not None and "kafka" in topology.modes:
        await brokers.kafka.create_topics(topics(spec))
    if rabbit is not None and "rabbitmq" in topology.modes:
        await rabbit.connect()
        await rabbit.declare_queues(queues(spec), exchanges(spec))
    services = [
        build_service(Process(spec, name, replica), override)
        for name, svc in topology.services.items()
        for replica in range(svc.replicas)
    ]
    workers = [build_worker(Process(spec, LOADGEN, w), override) for w in range(load.workers)]
    try:
        for service in services:
            await service.start()
        for worker in workers:
            await worker.transport.start()
        start_ns = time.monotonic_ns() + 10_000_000
        for service in services:
            service.recorder.start(start_ns + int(load.warmup_s * 1e9))
        reports = await asyncio.gather(
            *(w.drive(schedule_for(Process(spec, LOADGEN, w.worker), start_ns)) for w in workers)
        )
        await _settle(services, topology, sum(r.sent for r in reports), settle_s)
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
    recorders = {f"{s.spec.name}/{s.replica}": s.recorder.to_json() for s in services}
    recorders.update({f"loadgen/{w.worker}": w.recorder.to_json() for w in workers})
    return build_result(
        spec,
        started_at="",
        workers=[r.summary() for r in reports],
        recorders=recorders,
        processes=[
            ProcessResult(
                name=f"{s.spec.name}/{s.replica}",
                handled=s.handled,
                errors=s.errors,
                late_replies=s.late_replies,
            )
            for s in services
        ]
        + [
            ProcessResult(name=f"loadgen/{w.worker}", late_replies=w.transport.late_replies)
            for w in workers
        ],
        brokers={},
        environment={},
        notes=[],
    )


async def _settle(
    services: list[ServiceRuntime], topology: Topology, sent: int, limit_s: float
) -> None:
    """Wait until the sinks hold every completion, for at most limit_s."""
    expected = sent * len([r for r in topology.expected_routes() if r])
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if sum(s.recorder.completed_count() for s in services) >= expected:
            return
        await asyncio.sleep(0.02)
