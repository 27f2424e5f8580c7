"""Routing, completion and exact counting, above the transports (in-memory)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopbench.runspec import LoadSpec
from hopbench.topology import load_topology
from tests.inprocess import run_in_memory

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
LOAD = LoadSpec(rate=400, duration_s=0.5, warmup_s=0.25, payload_bytes=64)


@pytest.mark.parametrize("mode", ["http", "grpc", "kafka", "rabbitmq"])
def test_chain_every_message_completes_once(mode: str) -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode=mode)
    result = asyncio.run(run_in_memory(topology, LOAD))
    assert result.sent == 200
    assert result.warmup.sent == 100
    assert result.completed == result.expected == result.sent
    assert (result.lost, result.duplicated, result.errors) == (0, 0, 0)
    assert result.latency_us.count == result.completed
    # service time never exceeds latency: the actual send is after the intended one
    assert result.service_time_us.max <= result.latency_us.max
    expected_route = "loadgen (reply)" if mode in {"http", "grpc"} else "loadgen>gateway>worker"
    assert [r.route for r in result.routes] == [expected_route]


def test_fanout_every_subscriber_gets_every_message() -> None:
    topology = load_topology(TOPOLOGIES / "fanout.yaml")
    result = asyncio.run(run_in_memory(topology, LOAD))
    assert len(result.routes) == 3
    assert result.expected == 3 * result.sent
    assert result.completed == result.expected
    for route in result.routes:
        assert route.completed == result.sent
    # analytics has two replicas sharing its group: each message handled by one
    analytics = next(r for r in result.routes if r.route.endswith("analytics"))
    assert analytics.recorded_by == ["analytics/0", "analytics/1"]
    assert analytics.duplicated == 0
    handled = {p.name: p.handled for p in result.processes}
    assert handled["analytics/0"] + handled["analytics/1"] == 300  # warm-up included


def test_mixed_sync_entry_with_async_tail_completes_at_the_sink() -> None:
    topology = load_topology(
        TOPOLOGIES / "chain.yaml", overrides=["edges.gateway->worker.mode=rabbitmq"]
    )
    assert topology.mode_label == "mixed"
    result = asyncio.run(run_in_memory(topology, LOAD))
    assert [r.route for r in result.routes] == ["loadgen>gateway>worker"]
    assert result.completed == result.sent
