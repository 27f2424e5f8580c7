"""The run's one timebase, shared by every process of a run, on any host.

Every timestamp that crosses a process boundary (an envelope's send time, a
hop's arrival, the start of the schedule) is read from :func:`now_ns`:
``time.monotonic_ns()`` minus this process's offset from the orchestrator's
clock. On one host the offset is 0: Linux has one monotonic clock for every
process. On another host the orchestrator measures the offset over the control
connection (NTP-style: the smallest of several round trips, the agent's reading
taken to be at the midpoint, uncertainty half that round trip) and sends it
before the run starts. A monotonic clock, not the wall clock: an NTP step in the
middle of a run would otherwise show up as latency.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# Tests only: shift this process's clock and pretend to be another host, so that
# the offset measurement and its use can be checked on one machine.
_SKEW_NS = int(os.environ.get("HOPBENCH_TEST_CLOCK_SKEW_NS", "0"))
_shift_ns = -_SKEW_NS


def local_ns() -> int:
    """This host's own monotonic clock (what the orchestrator's clock probes read)."""
    return time.monotonic_ns() + _SKEW_NS


def now_ns() -> int:
    """Now, in the orchestrator's monotonic timebase."""
    return time.monotonic_ns() - _shift_ns


def kernel_ns(t_ns: int) -> int:
    """A time of the run's timebase on this host's kernel monotonic clock (a timer's)."""
    return t_ns + _shift_ns


def set_offset(offset_ns: int) -> None:
    """This host's monotonic clock minus the orchestrator's."""
    global _shift_ns
    _shift_ns = offset_ns - _SKEW_NS


def boot_id() -> str:
    """Equal on two processes iff they share a kernel, hence a monotonic clock."""
    try:
        found = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    return f"{found}+skewed{_SKEW_NS}" if _SKEW_NS else found
