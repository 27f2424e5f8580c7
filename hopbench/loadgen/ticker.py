"""Precise wake-ups for the send loop.

asyncio's and uvloop's timers have millisecond resolution: a send scheduled for
t fires anywhere in [t, t + 1 ms], which alone puts the send lag p99 near 1 ms.
A thread sleeping with ``time.sleep`` (nanosleep, ~50 µs slack on Linux) and
waking the loop through ``call_soon_threadsafe`` is ten times closer, and spins
no CPU while it waits.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time

from hopbench import clock

_STOP = -1


class Ticker:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: queue.SimpleQueue[tuple[int, asyncio.Future[None] | None]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    async def until(self, t_ns: int) -> None:
        """Return at monotonic time t_ns (or very soon after)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="hopbench-ticker", daemon=True)
            self._thread.start()
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._requests.put((t_ns, future))
        await future

    def _run(self) -> None:
        assert self._loop is not None
        while True:
            t_ns, future = self._requests.get()
            if t_ns == _STOP or future is None:
                return
            delay_ns = t_ns - clock.now_ns()
            if delay_ns > 0:
                time.sleep(delay_ns / 1e9)
            try:
                self._loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # the loop closed under us
                return

    def close(self) -> None:
        if self._thread is not None:
            self._requests.put((_STOP, None))
            self._thread.join(timeout=1)
            self._thread = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
