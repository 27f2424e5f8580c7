"""Load models above the transports: closed loop, Poisson, and a generator that
cannot keep up saying so (in memory)."""

from __future__ import annotations

import asyncio

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process


def test_closed_loop_counts_every_request_and_has_no_schedule_to_miss() -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="grpc")
    load = LoadSpec(rate=1, duration_s=0.5, warmup_s=0.2, payload_bytes=10, concurrency=4)
    result = asyncio.run(run_in_process(topology, load))
    assert result.sent > 100
    assert result.completed == result.sent
    assert result.lost == 0
    assert not result.generator_limited
    assert result.send_lag_us.max <= 1000  # the send is the intended time


def test_poisson_arrivals_complete_exactly() -> None:
    topology = load_topology(TOPOLOGIES / "fanout.yaml")
    load = LoadSpec(rate=400, duration_s=0.5, warmup_s=0.2, payload_bytes=10, arrival="poisson")
    result = asyncio.run(run_in_process(topology, load, settle_s=2))
    assert 120 < result.sent < 280  # 200 expected, Poisson spread
    assert result.completed == result.expected == 3 * result.sent
    assert result.load["arrival"] == "poisson"


def test_a_rate_the_generator_cannot_reach_is_flagged_and_counted() -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http")
    load = LoadSpec(rate=2_000_000, duration_s=0.3, warmup_s=0, payload_bytes=10)
    result = asyncio.run(run_in_process(topology, load))
    assert result.generator_limited
    assert result.unsent > 0
    assert result.sent + result.unsent == 600_000
    assert result.completed == result.sent  # what was sent is still counted exactly
    assert any("never sent" in note for note in result.notes)
