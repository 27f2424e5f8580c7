"""The generator's self-check on samples whose answer is known: a load worker at
saturation is the generator; a crowded host (the worker waiting for a CPU, the CPUs
busy, the run queue long) is the host; late with CPU to spare is the generator; and
what the tables show for each."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.measure.samplers import proc_stat
from hopbench.results.csv import csv_row
from hopbench.results.sampled import LateSends, ProcessSeries, Samples
from hopbench.results.schema import RunResult
from hopbench.results.selfcheck import flag, flag_legend, generator_check
from hopbench.results.table import render
from hopbench.run.sampling import _Process
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process

T = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.fixture(scope="module")
def one_run() -> RunResult:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http")
    load = LoadSpec(rate=50, duration_s=0.3, warmup_s=0, payload_bytes=10)
    return asyncio.run(run_in_process(topology, load))


def worker(cpu: float, waited: float | None = None, sleeps: float = 300.0) -> ProcessSeries:
    return ProcessSeries(
        name="loadgen/0",
        pid=1,
        cpu=[None, *[cpu] * (len(T) - 1)],
        state=["S"] * len(T),
        sleeps_per_s=[None, *[sleeps] * (len(T) - 1)],
        waited=[] if waited is None else [None, *[waited] * (len(T) - 1)],
    )


def limited(
    run: RunResult,
    loadgen: ProcessSeries,
    host_cpu: float = 0.5,
    run_queue: int = 1,
    pressure: float | None = None,
    **changes: Any,
) -> RunResult:
    samples = Samples(
        interval_s=1.0,
        t_s=T,
        cores=2,
        host_cpu=[None, *[host_cpu] * (len(T) - 1)],
        run_queue=[run_queue] * len(T),
        cpu_pressure=[pressure] * len(T),
        queues=[],
        processes=[loadgen],
        sampler_cpu_s=0.01,
    )
    update = {
        "samples": samples,
        "duration_s": 4.0,
        "generator_limited": True,
        "late_sends": None,  # the once-a-second samples decide, unless a test says
        **changes,
    }
    return run.model_copy(update=update)


def test_a_load_worker_at_saturation_is_the_generator(one_run: RunResult) -> None:
    run = limited(one_run, worker(0.96, waited=0.3), host_cpu=0.99, run_queue=6)
    found = generator_check(run)
    assert found is not None
    assert found.cause == "generator"
    assert "loadgen/0 at 96 % of a core" in found.detail
    assert flag(run.model_copy(update={"generator_limit": found})) == "!"


def test_a_loop_that_never_slept_is_the_generator(one_run: RunResult) -> None:
    found = generator_check(limited(one_run, worker(0.5, sleeps=1.0)))
    assert found is not None
    assert found.cause == "generator"
    assert "never waited for work" in found.detail


def test_a_worker_waiting_for_a_cpu_is_the_host(one_run: RunResult) -> None:
    run = limited(one_run, worker(0.3, waited=0.2), host_cpu=0.7)
    found = generator_check(run)
    assert found is not None
    assert found.cause == "host"
    assert "waited for a CPU 20 % of the time" in found.detail
    assert found.worker_waited == 0.2
    assert found.worker_cpu == 0.3
    marked = run.model_copy(update={"generator_limit": found})
    assert flag(marked) == "~"
    assert csv_row(marked)["generator_cause"] == "host"
    table = render([marked])
    assert "~" in table.splitlines()[2]
    assert "~ the host was busy" in table


@pytest.mark.parametrize(
    ("host_cpu", "run_queue", "pressure", "words"),
    [
        (0.95, 1, None, "CPUs were 95 % busy"),
        (0.6, 5, None, "5.0 tasks were runnable on 2 cores"),
        (0.6, 1, 35.0, "waited for a CPU 35 % of the time (PSI)"),
    ],
)
def test_a_crowded_host_without_schedstat_is_the_host(
    one_run: RunResult, host_cpu: float, run_queue: int, pressure: float | None, words: str
) -> None:
    run = limited(one_run, worker(0.3), host_cpu=host_cpu, run_queue=run_queue, pressure=pressure)
    found = generator_check(run)
    assert found is not None
    assert found.cause == "host"
    assert words in found.detail


def test_late_with_cpu_to_spare_is_the_generator(one_run: RunResult) -> None:
    found = generator_check(limited(one_run, worker(0.3, waited=0.01), host_cpu=0.5))
    assert found is not None
    assert found.cause == "generator"
    assert "with CPU to spare" in found.detail
    assert "host 50 % busy" in found.detail


def test_an_open_loop_reports_its_late_sends(one_run: RunResult) -> None:
    assert one_run.late_sends is not None
    assert one_run.late_sends.waited_us is not None  # Linux: the run delay was read
    assert one_run.late_sends.sends <= one_run.sent


def test_late_sends_mostly_waiting_for_a_cpu_are_the_host(one_run: RunResult) -> None:
    """The samples' averages look quiet (the worker waited 1 % of the time), but the
    late sends were behind mostly while their loop waited for a CPU: the host."""
    late = LateSends(sends=40, behind_us=20_000, waited_us=14_000, gc_us=1_000)
    run = limited(one_run, worker(0.3, waited=0.01), late_sends=late)
    found = generator_check(run)
    assert found is not None
    assert found.cause == "host"
    assert (found.late_waited, found.late_gc) == (0.7, 0.05)
    assert "40 sends over 1 ms late, 20.0 ms behind in all" in found.detail
    assert "waiting for a CPU 70 % of it (run delay)" in found.detail
    assert "the loop's own work 25 %" in found.detail
    assert flag(run.model_copy(update={"generator_limit": found})) == "~"


@pytest.mark.parametrize(
    ("waited_us", "gc_us", "words"),
    [(2_000, 12_000, "garbage collection 60 %"), (2_000, 0, "the loop's own work 90 %")],
)
def test_late_sends_not_waiting_for_a_cpu_are_the_generator(
    one_run: RunResult, waited_us: float, gc_us: float, words: str
) -> None:
    """Even where the averages say the host was crowded: the late sends' own split
    decides, when it was measured."""
    late = LateSends(sends=40, behind_us=20_000, waited_us=waited_us, gc_us=gc_us)
    run = limited(one_run, worker(0.3, waited=0.2), host_cpu=0.95, late_sends=late)
    found = generator_check(run)
    assert found is not None
    assert found.cause == "generator"
    assert words in found.detail
    assert flag(run.model_copy(update={"generator_limit": found})) == "!"


def test_late_sends_without_run_delay_fall_back_to_the_samples(one_run: RunResult) -> None:
    late = LateSends(sends=40, behind_us=20_000, waited_us=None, gc_us=0)
    found = generator_check(limited(one_run, worker(0.3, waited=0.2), late_sends=late))
    assert found is not None
    assert found.cause == "host"
    assert found.late_waited is None


def test_no_samples_is_unknown_and_flagged(one_run: RunResult) -> None:
    run = one_run.model_copy(update={"generator_limited": True, "samples": None})
    found = generator_check(run)
    assert found is not None
    assert found.cause == "unknown"
    assert flag(run.model_copy(update={"generator_limit": found})) == "!"


def test_a_run_that_kept_its_schedule_has_no_check_and_no_flag(one_run: RunResult) -> None:
    run = limited(one_run, worker(0.99), generator_limited=False)
    assert generator_check(run) is None
    assert flag(run) == ""
    assert flag_legend([run]) == []


def test_the_sampler_reads_the_run_delay_of_a_real_process() -> None:
    stat = proc_stat(os.getpid())
    if stat is None or stat.waited_s is None:
        pytest.skip("this kernel keeps no /proc/PID/schedstat")
    assert stat.waited_s >= 0
    process = _Process(pid=os.getpid())
    process.add(0, 1.0, "R", 10, 0.5)
    process.add(2_000_000_000, 1.5, "R", 20, 0.9)  # 0.4 s waited in 2 s
    assert process.waited == [None, 0.2]
    assert process.series("x").waited == [None, 0.2]
