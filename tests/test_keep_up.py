"""When a run kept up with its target rate: within 1 % of it, less the one message a
window of whole messages can miss; the same rule for the generator's self-check and
the knee search."""

from __future__ import annotations

import asyncio

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.schema import RunResult, short_of
from hopbench.run.sweep import verdict
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process


@pytest.fixture(scope="module")
def one_run() -> RunResult:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http")
    load = LoadSpec(rate=50, duration_s=0.3, warmup_s=0, payload_bytes=10)
    return asyncio.run(run_in_process(topology, load))


def test_a_window_of_few_messages_may_hold_one_less_than_rate_times_duration() -> None:
    # 3 s at 12.5/s: 37 or 38 messages, both on schedule; 36 is one short
    assert not short_of(37 / 3, 12.5, 3)
    assert short_of(36 / 3, 12.5, 3)
    # at 1,000/s for 10 s the message is nothing: 1 % decides
    assert not short_of(9_900 / 10, 1000, 10)
    assert short_of(9_880 / 10, 1000, 10)


def test_the_knee_search_judges_with_the_same_rule(one_run: RunResult) -> None:
    on_time = one_run.model_copy(
        update={"target_rate": 12.5, "duration_s": 3.0, "achieved_rate": 12.3,
                "completion_rate": 12.3, "lost": 0, "errors": 0, "failure": None}
    )  # fmt: skip
    assert verdict(on_time, None) is None
    one_short = on_time.model_copy(update={"completion_rate": 12.0})
    assert verdict(one_short, None) == "completed 12/s of 12.5/s inside the window"
    behind = on_time.model_copy(update={"achieved_rate": 12.0})
    assert verdict(behind, None) == "sent 12/s of 12.5/s (the load generator fell behind)"
