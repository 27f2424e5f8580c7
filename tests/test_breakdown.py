"""Where the time goes: the parts of one message from its hops' stamps, the critical
path through a gather, and the mean of each part adding up to the mean latency, in
memory and over the real transports."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError
from hopbench.measure.breakdown import _spine_parts, _Stamps, _tree_parts, decompose
from hopbench.measure.merge import merge
from hopbench.measure.recorder import Recorder
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.results.schema import RouteResult, RunResult
from tests.conftest import TOPOLOGIES
from tests.inprocess import Brokers, run_in_process
from tests.test_merge import worker


def envelope(*hops: dict[str, int | str]) -> Envelope:
    env = Envelope(worker=0, seq=0, intended_ns=0, sent_ns=10)
    for hop in hops:
        env.hops.add(**hop)
    return env


CHAIN_CALLERS = {0: "loadgen", 1: "gateway"}
STAMPS = ("arrived_ns", "received_ns", "forwarded_ns", "gathered_ns", "published_ns",
          "returned_ns")  # fmt: skip


def test_a_round_trip_splits_into_consecutive_parts() -> None:
    # loadgen -> gateway -> worker, both request-reply; the reply comes back at 250
    env = envelope(
        dict(edge=0, service="gateway", arrived_ns=30, received_ns=35, forwarded_ns=60,
             gathered_ns=200, replied_ns=210),
        dict(edge=1, service="worker", arrived_ns=80, received_ns=90, forwarded_ns=150,
             replied_ns=160, returned_ns=190),
    )  # fmt: skip
    found = decompose(env, 250, 0, CHAIN_CALLERS, frozenset({0, 1}))
    assert found is not None
    assert found.send_lag_ns == 10
    # transit from the previous send, wait for a handler, work, then its own rest:
    # for the worker, its reply's trip back; for the gateway, after the worker's reply
    parts = [(h.transit_ns, h.wait_ns, h.work_ns, h.rest_ns) for h in found.hops]
    assert parts == [(20, 5, 25, 60), (20, 10, 60, 40)]
    assert [h.on_path for h in found.hops] == [True, True]
    assert found.path_total_ns() == 250  # completion - intended, exactly


def test_a_gather_follows_the_reply_that_came_back_last() -> None:
    callers = {0: "loadgen", 1: "agg", 2: "agg", 3: "agg"}
    env = envelope(
        dict(edge=0, service="agg", arrived_ns=20, received_ns=20, forwarded_ns=40,
             gathered_ns=185, replied_ns=190),
        dict(edge=1, service="a", arrived_ns=50, received_ns=50, forwarded_ns=90,
             replied_ns=95, returned_ns=100),
        dict(edge=2, service="b", arrived_ns=60, received_ns=70, forwarded_ns=170,
             replied_ns=172, returned_ns=180),
        dict(edge=3, service="c", arrived_ns=55, received_ns=55, forwarded_ns=140,
             replied_ns=145, returned_ns=150),
    )  # fmt: skip
    found = decompose(env, 200, 0, callers, frozenset({0, 1, 2, 3}))
    assert found is not None
    assert [h.on_path for h in found.hops] == [True, False, True, False]
    assert found.hops[0].rest_ns == 200 - 180  # after b's reply: gather, reply, trip back
    assert found.hops[1].rest_ns == 100 - 90  # off the path, still measured
    assert found.path_total_ns() == 200
    # summing every branch instead of the critical path would overshoot
    overshoot = sum(h.transit_ns + h.wait_ns + h.work_ns + (h.rest_ns or 0) for h in found.hops)
    assert overshoot + found.send_lag_ns > 200


def test_a_one_way_route_through_a_call_starts_each_transit_at_the_right_send() -> None:
    # loadgen -> gateway (request-reply) -> orders (request-reply) -> inventory (publish)
    callers = {0: "loadgen", 1: "gateway", 2: "orders"}
    env = envelope(
        dict(edge=0, service="gateway", arrived_ns=20, received_ns=20, forwarded_ns=50),
        dict(edge=1, service="orders", arrived_ns=60, received_ns=65, forwarded_ns=100,
             gathered_ns=130, published_ns=140),
        dict(edge=2, service="inventory", arrived_ns=160, received_ns=170, forwarded_ns=190),
    )  # fmt: skip
    found = decompose(env, 200, 3, callers, frozenset({0, 1}))
    assert found is not None
    gateway, orders, inventory = found.hops
    assert gateway.rest_ns is None  # the route goes on by its call: its time ends there
    assert orders.transit_ns == 60 - 50  # a call goes out when the caller's work is done
    assert orders.rest_ns == 140 - 100  # its own calls and publishing, before this copy left
    assert inventory.transit_ns == 160 - 140  # from the publish, not from orders' work
    assert inventory.rest_ns == 200 - 190
    assert found.path_total_ns() == 200


def test_an_asynchronous_recorder_includes_its_own_calls() -> None:
    # loadgen -> a over a broker; a calls b and records when b replied
    env = envelope(
        dict(edge=0, service="a", arrived_ns=40, received_ns=45, forwarded_ns=50, gathered_ns=95),
        dict(edge=1, service="b", arrived_ns=60, received_ns=60, forwarded_ns=80,
             replied_ns=82, returned_ns=90),
    )  # fmt: skip
    found = decompose(env, 100, 1, {0: "loadgen", 1: "a"}, frozenset({1}))
    assert found is not None
    assert [h.on_path for h in found.hops] == [True, True]
    assert found.hops[0].rest_ns == 100 - 90
    assert found.path_total_ns() == 100


def test_missing_stamps_fall_back_and_the_parts_still_add_up() -> None:
    # an envelope from before the arrival, gather and reply stamps
    env = envelope(
        dict(edge=0, service="gateway", received_ns=30, forwarded_ns=60),
        dict(edge=1, service="worker", received_ns=90, forwarded_ns=150),
    )
    found = decompose(env, 250, 0, CHAIN_CALLERS, frozenset({0, 1}))
    assert found is not None
    assert [h.wait_ns for h in found.hops] == [0, 0]
    assert found.path_total_ns() == 250
    assert decompose(Envelope(), 5, 0, {}, frozenset()) is None


def test_a_route_without_a_call_tree_gets_the_same_parts_by_the_short_way() -> None:
    # decompose takes _spine_parts when every hop is on the route: it must agree with
    # the general walk, stamp for stamp, missing stamps and either pattern included
    draw = random.Random(14)
    for _ in range(500):
        hops: list[dict[str, int | str]] = []
        for k in range(draw.randint(1, 4)):
            hop: dict[str, int | str] = {"edge": k, "service": f"s{k}"}
            hop.update({name: draw.choice([0, draw.randint(1, 10**9)]) for name in STAMPS})
            hops.append(hop)
        env = envelope(*hops)
        env.sent_ns = draw.randint(1, 10**9)
        request_reply = frozenset(k for k in range(4) if draw.random() < 0.5)
        completion = draw.randint(1, 10**9)
        read = [_Stamps.of(h) for h in env.hops]
        tree = _tree_parts(env, read, len(read), completion, {}, request_reply)
        assert _spine_parts(env.sent_ns, list(env.hops), completion, request_reply) == tree


def test_recorders_merge_the_parts_exactly() -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="kafka", pattern="publish-subscribe")
    recorders = []
    for seqs in (range(0, 3), range(3, 5)):
        recorder = Recorder(topology.callers, request_reply=topology.request_reply)
        for seq in seqs:
            env = envelope(
                dict(edge=0, service="gateway", arrived_ns=1_000, received_ns=3_000,
                     forwarded_ns=10_000, published_ns=11_000),
                dict(edge=1, service="worker", arrived_ns=21_000, received_ns=22_000,
                     forwarded_ns=72_000),
            )  # fmt: skip
            env.seq = seq
            recorder.complete((0, 1), env, 80_000)
        recorders.append(recorder.to_json())
    _, (route,) = merge(topology, [worker(5, 0)], {"w/0": recorders[0], "w/1": recorders[1]})
    assert route.decomposed == 5
    assert route.send_lag_ns == 5 * 10
    assert route.hops["worker"].path_ns == [5 * 10_000, 5 * 1_000, 5 * 50_000, 5 * 8_000]
    assert route.hops["worker"].parts[2].get_total_count() == 5
    assert route.hops["gateway"].on_path == 5


# --- whole runs: the means add up -----------------------------------------------------


def assert_parts_add_up(route: RouteResult) -> None:
    found = route.breakdown
    assert found is not None
    assert found.completions == route.completed > 0
    assert abs(found.latency_mean_us - route.latency_us.mean) < 0.1
    parts = found.send_lag_us + sum(
        h.transit_us + h.wait_us + h.work_us + h.rest_us for h in found.hops
    )
    assert abs(found.residual_us) < max(0.02 * found.latency_mean_us, 50), found
    assert abs(found.latency_mean_us - parts - found.residual_us) < 1  # rounding of shares


LOAD = LoadSpec(rate=200, duration_s=0.5, warmup_s=0.25, payload_bytes=64)


@pytest.mark.parametrize(
    ("file", "sets"),
    [
        ("chain.yaml", []),
        ("scatter-gather.yaml", ["services.aggregator.gather.policy=all",
                                 "services.aggregator.gather.quorum=null",
                                 "services.aggregator.gather.timeout_ms=5000"]),
        ("order-hybrid.yaml", []),
    ],
)  # fmt: skip
def test_in_memory_the_parts_add_up_to_the_mean(file: str, sets: list[str]) -> None:
    topology = load_topology(TOPOLOGIES / file, sets)
    result = asyncio.run(run_in_process(topology, LOAD, settle_s=5))
    assert result.completed == result.expected
    for route in result.routes:
        assert_parts_add_up(route)
    if file == "scatter-gather.yaml":
        (route,) = result.routes
        assert route.breakdown is not None
        # exactly one callee is on each message's critical path
        callees = [h for h in route.breakdown.hops if h.service != "aggregator"]
        assert abs(sum(h.on_path for h in callees) - 1) < 0.01
        assert {h.service for h in route.hops} == {"aggregator", "pricing", "inventory", "reviews"}


@pytest.mark.parametrize("mode", ["http", "grpc", "kafka", "rabbitmq"])
def test_io_work_shows_as_work_and_the_parts_add_up(mode: str, brokers: Brokers) -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", ["services.worker.work.io_ms=5"], mode)
    load = LoadSpec(rate=100, duration_s=0.5, warmup_s=0.25, payload_bytes=64)
    result = asyncio.run(run_in_process(topology, load, brokers, settle_s=5))
    (route,) = result.routes
    assert route.completed == result.sent == 50
    assert_parts_add_up(route)
    assert route.breakdown is not None
    worker_share = next(h for h in route.breakdown.hops if h.service == "worker")
    worker_parts = next(h for h in route.hops if h.service == "worker")
    assert 5_000 <= worker_parts.work_us.p50 < 9_000  # asyncio.sleep(5 ms) and a little
    assert 5_000 <= worker_share.work_us < 9_000


def slow_service(mode: str, concurrency: int | None) -> Topology:
    """One service, 5 ms of awaited work per message, at most `concurrency` at once."""
    return Topology.from_dict(
        {
            "name": "slow",
            "services": {"slow": {"concurrency": concurrency, "work": {"io_ms": 5}}},
            "edges": [{"from": "loadgen", "to": "slow", "mode": mode}],
        }
    )


# 60 messages in 0.2 s to a service that handles 200/s one at a time: a backlog of
# about 20, below every transport's own limit (32 HTTP connections, prefetch 100), so
# it builds inside the service, waiting for its one handler
BURST = LoadSpec(rate=300, duration_s=0.2, warmup_s=0, payload_bytes=64)


@pytest.mark.parametrize("mode", ["http", "grpc", "kafka", "rabbitmq"])
def test_one_handler_under_a_burst_shows_waiting_not_transit(mode: str, brokers: Brokers) -> None:
    result = asyncio.run(run_in_process(slow_service(mode, 1), BURST, brokers, settle_s=5))
    (route,) = result.routes
    assert route.completed == 60
    assert_parts_add_up(route)
    assert route.breakdown is not None
    (slow,) = route.breakdown.hops
    assert slow.wait_us > 10_000, slow
    assert slow.transit_us < slow.wait_us / 3, slow


def test_without_a_limit_the_same_burst_does_not_wait() -> None:
    result = asyncio.run(run_in_process(slow_service("http", None), BURST, settle_s=5))
    (route,) = result.routes
    assert route.breakdown is not None
    (slow,) = route.breakdown.hops
    assert slow.wait_us < 500, slow


def test_a_bad_concurrency_names_the_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nservices:\n  a:\n    concurrency: 0\n"
        "edges:\n  - {from: loadgen, to: a, mode: http}\n"
    )
    fix = "0: a replica needs at least 1 handler; leave concurrency out for no limit"
    with pytest.raises(ConfigError, match=rf"t\.yaml line 4: services\.a\.concurrency: {fix}"):
        load_topology(path)
    with pytest.raises(ConfigError, match=r"services\.a\.concurrency: 'many'"):
        load_topology(path, ["services.a.concurrency=many"])
    assert load_topology(path, ["services.a.concurrency=3"]).services["a"].concurrency == 3


def test_the_terminal_and_the_report_show_every_route() -> None:
    from hopbench.results.report import breakdown_section
    from hopbench.results.table import render_breakdown

    topology = load_topology(TOPOLOGIES / "order-hybrid.yaml")
    result: RunResult = asyncio.run(run_in_process(topology, LOAD, settle_s=5))
    text = render_breakdown([result])
    assert text.startswith("where the time goes")
    assert max(len(line) for line in text.splitlines()) <= 100
    for route in result.routes:
        assert f", {route.route}" in text
    assert "  payments " in text  # the round trip's critical path reaches the payment job
    page = breakdown_section([result])
    assert page.count("<svg") == len(result.routes) == 4  # a stacked bar chart per route
    assert page.count(">residual<") == 4
    assert '<td class="">payments</td>' in page
