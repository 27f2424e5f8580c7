"""Open-loop schedules: when each message is meant to be sent.

Constant: message i of worker w is due at ``start_ns + (i * workers + w) * period``,
so the workers interleave and together send at the target rate with even gaps.
Poisson: each worker draws exponential gaps at ``rate / workers`` (the sum of
independent Poisson processes is one at the total rate), from a seeded generator so
a run can be repeated exactly. Messages due before ``start_ns + warmup`` are warm-up.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from hopbench.config.settings import Arrival


@dataclass(frozen=True)
class OpenSchedule:
    start_ns: int
    rate: float  # all workers together, messages per second
    duration_s: float  # measured part
    warmup_s: float
    worker: int = 0
    workers: int = 1
    arrival: Arrival = "constant"
    seed: int = 0

    @property
    def period_ns(self) -> float:
        return 1e9 / self.rate

    @property
    def measure_start_ns(self) -> int:
        return self.start_ns + int(self.warmup_s * 1e9)

    @property
    def end_ns(self) -> int:
        return self.measure_start_ns + int(self.duration_s * 1e9)

    def arrivals(self) -> Iterator[int]:
        """Intended send times of this worker's messages, in order."""
        if self.arrival == "constant":
            for seq in range(self.count_before(self.end_ns)):
                yield self.start_ns + int((seq * self.workers + self.worker) * self.period_ns)
            return
        rng = random.Random(self.seed * 1_000_003 + self.worker)
        mean_gap_ns = self.period_ns * self.workers
        t = float(self.start_ns)
        while True:
            t += rng.expovariate(1.0) * mean_gap_ns
            if t >= self.end_ns:
                return
            yield int(t)

    def count_before(self, t_ns: int) -> int:
        """Constant arrivals: how many of this worker's are due strictly before t_ns."""
        slots = (t_ns - self.start_ns) / self.period_ns  # global slots before t
        return max(0, math.ceil((slots - self.worker) / self.workers))


@dataclass(frozen=True)
class ClosedSchedule:
    """``concurrency`` users, each sending, waiting for the reply, thinking, again.

    There is no intended time apart from the send itself: a closed loop slows down
    with the system it measures, which is exactly the coordinated omission that
    open-loop numbers avoid. Use it to model a fixed population of callers.
    """

    start_ns: int
    duration_s: float
    warmup_s: float
    concurrency: int
    think_s: float = 0.0

    @property
    def measure_start_ns(self) -> int:
        return self.start_ns + int(self.warmup_s * 1e9)

    @property
    def end_ns(self) -> int:
        return self.measure_start_ns + int(self.duration_s * 1e9)
