"""Replies over brokers: a reply after its caller's timeout is counted and dropped,
and the pending-reply tables hold only calls in flight, however long the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.services.runtime import ServiceRuntime
from hopbench.transports.replies import PendingReplies
from tests.inprocess import Brokers, KafkaBroker, run_in_process


def test_timed_out_calls_leave_nothing_behind_and_late_replies_are_counted() -> None:
    async def scenario() -> PendingReplies:
        replies = PendingReplies("t")
        calls = [replies.open() for _ in range(1000)]
        results = await asyncio.gather(
            *(replies.wait(c, f, 0.01, "edge") for c, f in calls), return_exceptions=True
        )
        assert all(isinstance(r, TransportError) for r in results)
        assert len(replies) == 0  # every timed-out call removed itself
        for correlation, _ in calls:
            replies.resolve(correlation, Envelope())  # the replies arrive, too late
        replies.resolve("never-asked", Envelope())
        return replies

    replies = asyncio.run(scenario())
    assert replies.late == 1001
    assert len(replies) == 0


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["kafka", "rabbitmq"])
def test_replies_after_the_callers_timeout_are_counted_never_leaked(
    tmp_path: Path, mode: str, kafka: KafkaBroker, rabbitmq_url: str
) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: slow\nservices:\n  front: {}\n  slow: {work: {io_ms: 300}}\nedges:\n"
        "  - {from: loadgen, to: front, mode: http}\n"
        f"  - {{from: front, to: slow, mode: {mode}, pattern: request-reply}}\n"
    )
    topology = load_topology(path)
    pending: list[int] = []

    def inspect(services: list[ServiceRuntime]) -> None:
        pending.extend(s.transports[mode].pending_replies for s in services if mode in s.transports)

    brokers = Brokers(kafka=kafka, rabbitmq_url=rabbitmq_url, real=True)
    result = asyncio.run(
        run_in_process(
            topology,
            LoadSpec(rate=100, duration_s=0.5, warmup_s=0.2, payload_bytes=10),
            brokers,
            settings=Settings(request_timeout_s=0.1),
            linger_s=1.5,
            inspect=inspect,
        )
    )
    assert result.completed == 0
    assert result.errors >= 2 * result.sent  # the load generator's and front's
    assert result.late_replies == result.sent + result.warmup.sent  # every reply came late
    assert pending == [0, 0]  # front's table (and slow's, which calls nobody) is empty


@pytest.mark.integration
@pytest.mark.parametrize("reply", ["direct", "queue"])
def test_rabbitmq_request_reply_by_direct_reply_to_or_a_reply_queue(
    tmp_path: Path, rabbitmq_url: str, reply: str
) -> None:
    path = tmp_path / "rr.yaml"
    path.write_text(
        "name: rr\nservices:\n  echo: {replicas: 2}\nedges:\n"
        "  - {from: loadgen, to: echo, mode: rabbitmq, pattern: request-reply}\n"
    )
    brokers = Brokers(rabbitmq_url=rabbitmq_url, real=True)
    result = asyncio.run(
        run_in_process(
            load_topology(path),
            LoadSpec(rate=300, duration_s=0.5, warmup_s=0.2, payload_bytes=10),
            brokers,
            settings=Settings(rabbitmq_reply=reply),
        )
    )
    assert result.completed == result.sent
    assert (result.lost, result.errors, result.late_replies) == (0, 0, 0)
