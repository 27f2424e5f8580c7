"""Cores of their own for the load workers: the plan from the cores available, the
move of a real process, and the affinity put back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hopbench.run.cores import (
    SHARED_CORES,
    CorePlan,
    available_cores,
    narrow_self,
    not_placed,
    pin_workers,
    plan_cores,
)


def test_each_worker_gets_one_of_the_highest_cores_and_the_rest_share() -> None:
    plan = plan_cores([0, 1, 2, 3, 4, 5], 2)
    assert plan is not None
    assert plan.workers == {0: 4, 1: 5}
    assert plan.shared == (0, 1, 2, 3)


def test_too_few_cores_place_nothing_and_say_why() -> None:
    assert plan_cores([0, 1], 1) is None
    assert plan_cores([0, 1, 2], 2) is None
    assert plan_cores([0, 1, 2], 0) is None
    found = not_placed([0, 1], 1)
    assert found["load_workers"] == "shared"
    assert f"need {1 + SHARED_CORES}" in found["why"]


def test_a_taskset_with_gaps_is_respected() -> None:
    plan = plan_cores([2, 5, 7, 9], 1)
    assert plan is not None
    assert plan.workers == {0: 9}
    assert plan.shared == (2, 5, 7)


@pytest.fixture
def sleeper() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_real_worker_is_moved_to_its_core(sleeper: int) -> None:
    cores = available_cores()
    if not cores:
        pytest.skip("no CPU affinity on this platform")
    plan = CorePlan(workers={0: cores[-1]}, shared=tuple(cores))
    found = pin_workers(plan, {0: sleeper})
    assert found["cores"] == {"loadgen/0": [cores[-1]]}
    assert os.sched_getaffinity(sleeper) == {cores[-1]}
    assert found["load_workers"] == "own cores"


def test_a_worker_that_cannot_be_moved_is_named(sleeper: int) -> None:
    plan = plan_cores([0, 1, 2, 4096], 1)  # core 4096 does not exist
    assert plan is not None
    found = pin_workers(plan, {0: sleeper})
    assert found["load_workers"] == "shared"
    assert "loadgen/0" in found["failed"]


def test_narrowing_self_returns_what_to_put_back() -> None:
    cores = available_cores()
    if len(cores) < 2:
        pytest.skip("one core: nothing to narrow")
    before = os.sched_getaffinity(0)
    try:
        kept = narrow_self(CorePlan(workers={0: cores[-1]}, shared=tuple(cores[:1])))
        assert kept == before
        assert os.sched_getaffinity(0) == {cores[0]}
    finally:
        os.sched_setaffinity(0, before)
    assert os.sched_getaffinity(0) == before
