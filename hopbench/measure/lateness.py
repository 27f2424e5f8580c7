"""Where a late send's time went: waiting for a CPU, garbage collection, or the
loop's own work.

Sends more than 1 ms behind their schedule (the load worker's ``LATE_NS``) are what
make a run ``generator_limited``. The run's samples (once a second) say how crowded the host
was on average; a send lag p99 is about the worst 1 % of sends, so averages cannot
say what delayed those. This watch is read at every measured send of an open loop
and splits the time the loop was behind schedule with two clocks:

- the loop thread's **run delay** (``/proc/thread-self/schedstat``, the second
  field): time it was runnable and waited for a CPU that another task held;
- the time this process spent in **garbage collection** (``gc.callbacks``).

What neither covers is the loop's own work: other callbacks (replies, connections),
and waits for the GIL while a client's own threads hold it.

For a late send, the stretch counted is from its intended time (or the previous
send, if that was later) to its send: consecutive late sends of one stall count the
stall once. A read costs about 1.5 µs: the file stays open and is read with
``pread``, where the once-a-second sampler (``samplers.run_delay_s``) opens it each
time. Where the file is missing only the garbage collection is split out.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import Any

SCHEDSTAT = "/proc/thread-self/schedstat"


@dataclass
class Lateness:
    """What the late sends of one load worker add up to, in ns."""

    sends: int = 0  # measured sends more than LATE_NS behind their schedule
    behind_ns: int = 0  # the time the loop was behind on their account
    waited_ns: int = 0  # of it: the loop thread runnable, waiting for a CPU
    gc_ns: int = 0  # of it: garbage collection in this process
    run_delay_read: bool = True  # False: no schedstat here, waited_ns is not measured

    def add(self, other: Lateness) -> None:
        self.sends += other.sends
        self.behind_ns += other.behind_ns
        self.waited_ns += other.waited_ns
        self.gc_ns += other.gc_ns
        self.run_delay_read = self.run_delay_read and other.run_delay_read


class LateWatch:
    """``sent(intended_ns, sent_ns, late)`` at every measured send; ``close()`` after."""

    def __init__(self) -> None:
        self.found = Lateness()
        try:
            self._fd: int | None = os.open(SCHEDSTAT, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # not Linux, or a kernel without schedstat
            self._fd = None
            self.found.run_delay_read = False
        self._gc_total = 0
        self._gc_began = 0
        self._last_sent = 0
        self._last_waited = self._run_delay()
        self._last_gc = 0
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter_ns()
        elif self._gc_began:
            self._gc_total += time.perf_counter_ns() - self._gc_began
            self._gc_began = 0

    def _run_delay(self) -> int:
        if self._fd is None:
            return 0
        return int(os.pread(self._fd, 64, 0).split()[1])

    def sent(self, intended_ns: int, sent_ns: int, late: bool) -> None:
        waited, collected = self._run_delay(), self._gc_total
        if late and self._last_sent:
            found = self.found
            found.sends += 1
            span = sent_ns - max(self._last_sent, intended_ns)
            if span > 0:
                in_waits = min(waited - self._last_waited, span)
                found.behind_ns += span
                found.waited_ns += in_waits
                found.gc_ns += min(collected - self._last_gc, span - in_waits)
        self._last_sent, self._last_waited, self._last_gc = sent_ns, waited, collected

    def close(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
