"""Open-loop schedules: every slot once, workers interleaved, warm-up split exactly."""

from __future__ import annotations

from hopbench.loadgen.schedule import ConstantSchedule


def test_one_worker_sends_rate_times_duration() -> None:
    s = ConstantSchedule(start_ns=1_000, rate=200, duration_s=5, warmup_s=1)
    assert s.total == 1200
    assert s.first_measured_seq == 200
    assert s.intended_ns(0) == 1_000
    assert s.intended_ns(1) == 1_000 + 5_000_000
    assert s.intended_ns(200) == s.measure_start_ns


def test_workers_interleave_and_together_cover_every_slot() -> None:
    one = ConstantSchedule(0, rate=1000, duration_s=2, warmup_s=0.5)
    parts = [ConstantSchedule(0, 1000, 2, 0.5, worker=w, workers=3) for w in range(3)]
    assert sum(p.total for p in parts) == one.total
    assert sum(p.first_measured_seq for p in parts) == one.first_measured_seq
    times = sorted(p.intended_ns(i) for p in parts for i in range(p.total))
    assert times == [one.intended_ns(i) for i in range(one.total)]
