"""Scatter-gather: all, first and quorum policies, per-call timeouts, on sync and
asynchronous modes in one fan-out (in memory and over the real transports)."""

from __future__ import annotations

import asyncio

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.errors import ConfigError
from tests.conftest import TOPOLOGIES
from tests.inprocess import Brokers, run_in_process

LOAD = LoadSpec(rate=200, duration_s=0.5, warmup_s=0.3, payload_bytes=20)
SG = TOPOLOGIES / "scatter-gather.yaml"


@pytest.mark.parametrize(("policy", "replies"), [("all", 3), ("first", 1), ("quorum", 2)])
def test_each_policy_answers_with_the_replies_it_needs(
    brokers: Brokers, policy: str, replies: int
) -> None:
    sets = [f"services.aggregator.gather.policy={policy}",
            "services.aggregator.gather.timeout_ms=2000"]  # fmt: skip
    if policy != "quorum":
        sets.append("services.aggregator.gather.quorum=null")
    topology = load_topology(SG, sets)
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=3))
    assert result.completed == result.sent
    assert (result.lost, result.errors) == (0, 0)
    (route,) = result.routes
    hops = {h.service: h.work_us.count for h in route.hops}
    assert hops["aggregator"] == result.completed
    callee_hops = sum(n for name, n in hops.items() if name != "aggregator")
    assert callee_hops == replies * result.completed  # only the replies it waited for


def test_a_member_slower_than_the_timeout_fails_policy_all(brokers: Brokers) -> None:
    topology = load_topology(SG, ["services.aggregator.gather.policy=all",
                                  "services.aggregator.gather.quorum=null",
                                  "services.reviews.work.io_ms=300"])  # fmt: skip
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=1))
    assert result.completed == 0
    assert result.errors >= result.sent  # every call: the load generator's error at least


def test_a_quorum_larger_than_the_calls_is_rejected() -> None:
    with pytest.raises(ConfigError, match="quorum between 1 and its 3 request-reply edges"):
        load_topology(SG, ["services.aggregator.gather.quorum=4"])
