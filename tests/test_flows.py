"""Routing, completion and exact counting: each body runs in memory and for real.

The in-memory run checks the logic above the transports; the real run (marked
integration) checks that every transport keeps the same delivery semantics over
real HTTP, gRPC, Tansu and RabbitMQ.
"""

from __future__ import annotations

import asyncio

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from tests.conftest import TOPOLOGIES
from tests.inprocess import Brokers, run_in_process

LOAD = LoadSpec(rate=400, duration_s=0.5, warmup_s=0.25, payload_bytes=64)


@pytest.mark.parametrize("pattern", ["request-reply", "fire-and-forget"])
@pytest.mark.parametrize("mode", ["http", "grpc", "kafka", "rabbitmq"])
def test_chain_every_message_completes_once(mode: str, pattern: str, brokers: Brokers) -> None:
    """Both questions over every mode: the round trip the caller sees, and one-way delivery."""
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode=mode, pattern=pattern)
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=5))
    assert result.sent == 200
    assert result.warmup.sent == 100
    assert result.completed == result.expected == result.sent
    assert (result.lost, result.duplicated, result.errors) == (0, 0, 0)
    assert result.warmup.lost == 0
    assert result.latency_us.count == result.completed
    # service time never exceeds latency: the actual send is after the intended one
    assert result.service_time_us.max <= result.latency_us.max
    assert result.negative_latencies == 0
    round_trip = pattern == "request-reply"
    expected_route = "loadgen (reply)" if round_trip else "loadgen>gateway>worker"
    assert [r.route for r in result.routes] == [expected_route]
    assert result.routes[0].measures == ("round trip" if round_trip else "one-way to worker")
    assert result.status == "ok", result.failure
    # the hop breakdown covers both services, for every completion
    hops = result.routes[0].hops
    assert [h.service for h in hops] == ["gateway", "worker"]
    assert all(h.transit_us.count == h.work_us.count == result.completed for h in hops)
    assert hops[1].work_us.p50 >= 50  # worker: cpu_us 50


def test_fanout_every_subscriber_gets_every_message(brokers: Brokers) -> None:
    topology = load_topology(TOPOLOGIES / "fanout.yaml")
    assert topology.modes == {"kafka"}
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=5))
    assert len(result.routes) == 3
    assert result.expected == 3 * result.sent
    assert result.completed == result.expected
    assert (result.lost, result.duplicated) == (0, 0)
    for route in result.routes:
        assert route.completed == result.sent
    # analytics has two replicas in one consumer group: each message handled by one
    handled = {p.name: p.handled for p in result.processes}
    total = result.sent + result.warmup.sent
    assert handled["analytics/0"] + handled["analytics/1"] == total
    assert handled["billing/0"] == handled["shipping/0"] == total


def test_competing_consumers_handle_each_message_once(brokers: Brokers) -> None:
    topology = load_topology(
        TOPOLOGIES / "chain.yaml",
        overrides=["services.worker.replicas=2"],
        mode="rabbitmq",
        pattern="fire-and-forget",
    )
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=5))
    assert result.completed == result.sent
    assert (result.lost, result.duplicated) == (0, 0)
    handled = {p.name: p.handled for p in result.processes}
    assert handled["worker/0"] + handled["worker/1"] == result.sent + result.warmup.sent
    assert handled["worker/0"] > 0
    assert handled["worker/1"] > 0
    assert result.routes[0].recorded_by == ["worker/0", "worker/1"]


def test_sync_entry_with_async_tail_completes_twice(brokers: Brokers) -> None:
    topology = load_topology(
        TOPOLOGIES / "chain.yaml",
        overrides=[
            "edges.gateway->worker.mode=rabbitmq",
            "edges.gateway->worker.pattern=fire-and-forget",
        ],
    )
    assert topology.mode_label == "mixed"
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=5))
    # the round trip the caller saw, and the one-way delivery behind it
    routes = {r.route: r for r in result.routes}
    assert set(routes) == {"loadgen (reply)", "loadgen>gateway>worker"}
    assert result.expected == result.completed == 2 * result.sent
    assert result.lost == 0
    assert [h.service for h in routes["loadgen (reply)"].hops] == ["gateway"]
