"""Futures that must settle in time: one timer for all of them, not one each.

A publish that is not waited for (``Transport.send``) still has its timeout: the edge's
``request_timeout_s``, counted from the hand-off. ``asyncio.timeout`` per message costs
a timer and a task to cancel; here a future still pending at its deadline is cancelled
by one sweep, and whoever waits on it sees the cancellation as the timeout. The futures
of one timeout are queued in the order they were handed over, so a sweep looks only at
the oldest ones, and the settled ones at the front are dropped as new ones come.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

Queue = deque[tuple[float, "asyncio.Future[Any]"]]


class Deadlines:
    def __init__(self) -> None:
        self._queues: dict[float, Queue] = {}  # by timeout: (deadline, future), oldest first
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[Any], timeout_s: float, started: float) -> None:
        """Cancel future unless it settled by started + timeout_s (the loop's time)."""
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = deque()
        while queue and queue[0][1].done():
            queue.popleft()
        deadline = started + timeout_s
        queue.append((deadline, future))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._sweep)

    def __len__(self) -> int:
        return sum(1 for queue in self._queues.values() for _, f in queue if not f.done())

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_at: float | None = None
        for queue in self._queues.values():
            while queue:
                deadline, future = queue[0]
                if not future.done() and deadline > now:
                    break
                queue.popleft()
                future.cancel()  # a no-op on a settled one
            if queue:
                next_at = queue[0][0] if next_at is None else min(next_at, queue[0][0])
        self._timer = None if next_at is None else loop.call_at(next_at, self._sweep)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
