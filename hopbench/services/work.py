"""The work model of a service: busy CPU, then an awaited delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def burn_cpu(cpu_us: int) -> None:
    """Spin for cpu_us of wall time on this core; blocks the loop, as real work would."""
    if cpu_us <= 0:
        return
    end = time.perf_counter_ns() + cpu_us * 1000
    while time.perf_counter_ns() < end:
        pass


async def do_work(
    cpu_us: int, io_ms: float, burn: Callable[[int], Awaitable[None]] | None = None
) -> None:
    """burn: where the CPU part runs (hopbench.services.limits); default: this loop."""
    if burn is None:
        burn_cpu(cpu_us)
    else:
        await burn(cpu_us)
    if io_ms > 0:
        await asyncio.sleep(io_ms / 1000)
