"""Schedules: every slot once, workers interleaved, warm-up split exactly; Poisson
arrivals at the right mean rate, reproducible from their seed."""

from __future__ import annotations

import itertools
import statistics

from hopbench.loadgen.schedule import OpenSchedule


def test_one_worker_sends_rate_times_duration() -> None:
    s = OpenSchedule(start_ns=1_000, rate=200, duration_s=5, warmup_s=1)
    times = list(s.arrivals())
    assert len(times) == 1200
    assert times[0] == 1_000
    assert times[1] == 1_000 + 5_000_000
    assert times[200] == s.measure_start_ns
    assert sum(t < s.measure_start_ns for t in times) == 200


def test_workers_interleave_and_together_cover_every_slot() -> None:
    one = list(OpenSchedule(0, rate=1000, duration_s=2, warmup_s=0.5).arrivals())
    parts = [list(OpenSchedule(0, 1000, 2, 0.5, worker=w, workers=3).arrivals()) for w in range(3)]
    assert sorted(t for p in parts for t in p) == one


def test_poisson_arrivals_have_the_mean_rate_and_exponential_gaps() -> None:
    s = OpenSchedule(0, rate=2000, duration_s=20, warmup_s=0, arrival="poisson", seed=7)
    times = list(s.arrivals())
    assert abs(len(times) - 40_000) < 4 * 200  # Poisson: sd = sqrt(40,000) = 200
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = statistics.fmean(gaps)
    assert abs(mean - 500_000) < 10_000
    assert abs(statistics.pstdev(gaps) / mean - 1) < 0.05  # exponential: sd == mean
    assert times == list(s.arrivals())  # the same seed, the same run
    other = OpenSchedule(0, rate=2000, duration_s=20, warmup_s=0, arrival="poisson", seed=8)
    assert list(other.arrivals())[:10] != times[:10]
