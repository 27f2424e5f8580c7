"""The late sends' split, on clocks whose answer is known: a thread sharing its one CPU
with a spinning process waits for it (run delay); a forced collection is garbage
collection; a thread asleep waits for nothing; one stall counts once."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hopbench import clock
from hopbench.measure.lateness import SCHEDSTAT, Lateness, LateWatch

needs_schedstat = pytest.mark.skipif(
    not os.path.exists(SCHEDSTAT), reason="no /proc/thread-self/schedstat on this kernel"
)


@pytest.fixture
def watch() -> Iterator[LateWatch]:
    found = LateWatch()
    try:
        yield found
    finally:
        found.close()


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def late_after(watch: LateWatch, what: object) -> Lateness:
    """One send on time, then whatever `what` does, then a send due at the first."""
    due = clock.now_ns()
    watch.sent(due, due, late=False)
    assert callable(what)
    what()
    watch.sent(due, clock.now_ns(), late=True)
    return watch.found


@needs_schedstat
def test_a_thread_sharing_its_cpu_with_a_spinner_waits_for_it(watch: LateWatch) -> None:
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    spinner = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile 1: pass"]
    )
    try:
        os.sched_setaffinity(0, {cpu})  # this thread only
        time.sleep(0.1)  # the spinner is on the CPU
        found = late_after(watch, lambda: spin(0.2))
    finally:
        os.sched_setaffinity(0, before)
        spinner.kill()
        spinner.wait()
    assert found.sends == 1
    assert found.behind_ns >= 200_000_000
    # two runnable tasks on one CPU: each waits for it about half the time
    assert found.waited_ns >= 0.25 * found.behind_ns
    assert found.waited_ns <= found.behind_ns


@needs_schedstat
def test_a_thread_asleep_waits_for_no_cpu(watch: LateWatch) -> None:
    found = late_after(watch, lambda: time.sleep(0.2))
    assert found.behind_ns >= 200_000_000
    assert found.waited_ns < 0.25 * found.behind_ns


def test_a_collection_counts_as_garbage_collection(watch: LateWatch) -> None:
    def collect() -> None:
        garbage = [[i] for i in range(200_000)]
        gc.collect()
        del garbage

    found = late_after(watch, collect)
    assert 0 < found.gc_ns <= found.behind_ns - found.waited_ns
    watch.close()
    assert watch._collected not in gc.callbacks  # close() takes its callback back


def test_one_stall_counts_once_however_many_sends_it_delayed(watch: LateWatch) -> None:
    watch.sent(1_000, 1_000, late=False)
    watch.sent(2_000, 10_000_000, late=True)  # behind from 2,000 (its intended time)
    watch.sent(3_000, 10_000_500, late=True)  # behind from the previous send only
    watch.sent(4_000, 10_000_900, late=True)
    found = watch.found
    assert found.sends == 3
    assert found.behind_ns == (10_000_000 - 2_000) + 500 + 400
