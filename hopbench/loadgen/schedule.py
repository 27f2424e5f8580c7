"""Open-loop schedules: when each message is meant to be sent.

Message i of worker w is due at ``start_ns + (i * workers + w) * period``: the
workers interleave, so together they send at the target rate with even gaps.
Messages due before ``start_ns + warmup`` are warm-up: sent and counted, not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantSchedule:
    start_ns: int
    rate: float  # all workers together, messages per second
    duration_s: float  # measured part
    warmup_s: float
    worker: int = 0
    workers: int = 1

    @property
    def period_ns(self) -> float:
        return 1e9 / self.rate

    @property
    def measure_start_ns(self) -> int:
        return self.start_ns + int(self.warmup_s * 1e9)

    @property
    def end_ns(self) -> int:
        return self.measure_start_ns + int(self.duration_s * 1e9)

    def intended_ns(self, seq: int) -> int:
        return self.start_ns + int((seq * self.workers + self.worker) * self.period_ns)

    def count_before(self, t_ns: int) -> int:
        """How many of this worker's messages are due strictly before t_ns."""
        slots = (t_ns - self.start_ns) / self.period_ns  # global slots before t
        return max(0, math.ceil((slots - self.worker) / self.workers))

    @property
    def total(self) -> int:
        return self.count_before(self.end_ns)

    @property
    def first_measured_seq(self) -> int:
        return self.count_before(self.measure_start_ns)
