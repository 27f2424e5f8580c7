"""A Kafka consumer whose handler was declared never to wait (``serve``'s at_once)
handles each record in the poller's turn; if the handler waits after all, the rest goes
on in a task, and still no more than ``prefetch`` records are in handlers at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hopbench import clock
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.topology import LOADGEN, Edge, Topology
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.run import phases
from hopbench.transports.context import TransportContext
from hopbench.transports.kafka import KafkaTransport
from tests.inprocess import KafkaBroker

MESSAGES, PREFETCH = 60, 4


@pytest.mark.integration
def test_a_handler_declared_at_once_that_waits_still_gets_every_record_within_prefetch(
    kafka: KafkaBroker,
) -> None:
    topology = Topology.from_dict(
        {"name": "t", "services": {"a": {}},
         "edges": [{"from": "loadgen", "to": "a", "mode": "kafka"}]}
    )  # fmt: skip
    spec = RunSpec(
        run_id=uuid.uuid4().hex[:8],
        topology=topology.to_dict(),
        settings=Settings(prefetch=PREFETCH),
        load=LoadSpec(rate=100, duration_s=5, warmup_s=0, payload_bytes=10),
        kafka_bootstrap=kafka.bootstrap,
    )
    edge = topology.entry_edge
    got: list[int] = []
    inside, most_inside, waited = 0, 0, 0

    async def handler(_edge: Edge, env: Envelope, _arrived_ns: int) -> Envelope | None:
        nonlocal inside, most_inside, waited
        inside += 1
        most_inside = max(most_inside, inside)
        if env.seq % 3 == 0:  # every third waits, against its declaration
            waited += 1
            await asyncio.sleep(0.01)
        got.append(env.seq)
        inside -= 1
        return None

    async def scenario() -> None:
        await phases.provision(phases.Brokers(kafka=kafka, rabbit=None), spec)
        server = KafkaTransport(TransportContext.of(spec, "a", 0))
        client = KafkaTransport(TransportContext.of(spec, LOADGEN, 0))
        try:
            server.serve(edge, handler, at_once=True)
            await server.start()
            await client.start()
            for seq in range(MESSAGES):
                now = clock.now_ns()
                env = Envelope(run_id=spec.run_id, seq=seq, intended_ns=now, sent_ns=now)
                await client.publish(edge, env)
            for _ in range(200):
                if len(got) == MESSAGES:
                    break
                await asyncio.sleep(0.05)
        finally:
            await client.close()
            await server.close()

    asyncio.run(scenario())
    assert sorted(got) == list(range(MESSAGES))
    assert waited == MESSAGES // 3
    assert 1 < most_inside <= PREFETCH  # the waiting ones overlapped, within prefetch
