"""Print each mode's baseline figures (every mode, or those named)::

.venv/bin/python -m bench.baselines [MODE ...]
"""

from __future__ import annotations

import asyncio
import sys
import time

import uvloop

from bench.baselines import MODES, latency, max_rate


async def _report(modes: list[str]) -> None:
    print(f"{'mode':9} {'p50 µs':>8} {'p99 µs':>8} {'count':>6} {'max msg/s':>10} {'took s':>7}")
    for mode in modes:
        started = time.monotonic()
        lat = await latency(mode, 500, 5, 1, 100)
        rate = await max_rate(mode, 5, 100)
        print(
            f"{mode:9} {lat.p50_us:8.0f} {lat.p99_us:8.0f} {lat.count:6d} {rate:10.0f}"
            f" {time.monotonic() - started:7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(MODES)
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        sys.exit(
            f"usage: python -m bench.baselines [{' '.join(MODES)}]...; unknown: {' '.join(unknown)}"
        )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_report(chosen))
