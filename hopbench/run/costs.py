"""What every process that carries the messages costs inside the measured window.

Each process's CPU is read at the window's start and at its end: a local child's
and a broker's on this host from /proc, an agent's over the control protocol (its
progress reply carries its usage). Warm-up, idle time before the load, the drain
and the grace period are outside; a process whose CPU could not be read at both
moments is not measured (None), never counted as zero.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from hopbench.control.child import Child
from hopbench.errors import HopbenchError
from hopbench.measure.usage import Usage, proc_usage
from hopbench.protocol.messages import Progress, ProgressReply
from hopbench.run.phases import Brokers, Window

ASK_TIMEOUT_S = 5.0


@dataclass
class WindowUsage:
    """Usage by process name at the measured window's start and end."""

    start: dict[str, Usage | None] = field(default_factory=dict)
    end: dict[str, Usage | None] = field(default_factory=dict)


async def usage_of(child: Child) -> Usage | None:
    """A child's CPU and memory so far: from /proc for ours, by asking an agent."""
    if child.proc is not None:
        return proc_usage(child.proc.pid)
    try:
        return (await child.ask(Progress(), ProgressReply, ASK_TIMEOUT_S)).usage
    except HopbenchError:
        return None


async def sample(children: list[Child], brokers: Brokers) -> dict[str, Usage | None]:
    """Every process's usage now."""
    found = await asyncio.gather(*(usage_of(c) for c in children))
    return {c.name: u for c, u in zip(children, found, strict=True)} | brokers.usage()


async def watch_window(
    children: list[Child], brokers: Brokers, window: Window, duration_s: float
) -> WindowUsage:
    """Sample at the measured window's start and end (call it before the start)."""
    usage = WindowUsage()
    await _until(window.origin_ns)
    usage.start = await sample(children, brokers)
    await _until(window.origin_ns + int(duration_s * 1e9))
    usage.end = await sample(children, brokers)
    return usage


async def _until(t_ns: int) -> None:
    await asyncio.sleep(max(0, t_ns - time.monotonic_ns()) / 1e9)
