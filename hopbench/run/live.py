"""Live progress while the load runs: each second's sends, completions and p99."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from hopbench.control.child import Child
from hopbench.errors import HopbenchError
from hopbench.measure.histogram import new_histogram
from hopbench.protocol.messages import Progress, ProgressReply
from hopbench.run.phases import Window


async def live(
    recording: Callable[[], list[Child]], window: Window, show: Callable[[int, str], None]
) -> None:
    """Just after each second ends: that second's sends, completions and p99, merged
    exactly across the processes that record completions (each still alive is asked;
    the list is read each second: a fault may kill one or start one)."""
    hist = new_histogram()
    k = (window.start_ns - window.origin_ns) // 1_000_000_000  # the schedule's first second
    while True:
        # 100 ms after second k ends, when its completions have landed
        wake_ns = window.origin_ns + (k + 1) * 1_000_000_000 + 100_000_000
        await asyncio.sleep(max(0, wake_ns - time.monotonic_ns()) / 1e9)
        try:
            asks = [c.ask(Progress(second=k), ProgressReply, 5) for c in recording() if c.alive]
            snaps = [r.live for r in await asyncio.gather(*asks) if r.live is not None]
        except HopbenchError:
            return  # a process in trouble: the run itself will say so
        hist.reset()
        for snap in snaps:
            if snap.latency:
                hist.decode_and_add(snap.latency)
        p99 = f"{hist.get_value_at_percentile(99) / 1000:.2f} ms" if hist.get_total_count() else "-"
        when = "warm-up" if k < 0 else f"{k + 1:>3d} s"
        sent, done = sum(s.sent for s in snaps), sum(s.completed for s in snaps)
        show(k, f"{when}: sent {sent}/s, completions {done}/s, p99 {p99}")
        k += 1


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
