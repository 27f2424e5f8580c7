"""Replies awaited over a broker: correlation ids, timeouts, and replies that come late.

A caller registers a correlation id before it sends and waits at most its timeout.
Whatever happens — a reply, a timeout, a cancellation — the entry is removed, so the
table only ever holds the calls in flight. A reply that finds no caller (it gave up
or never existed) is counted in ``late`` and dropped.
"""

from __future__ import annotations

import asyncio
import itertools

from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope


class PendingReplies:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[Envelope]] = {}
        self.late = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def open(self) -> tuple[str, asyncio.Future[Envelope]]:
        correlation = f"{self._prefix}-{next(self._ids)}"
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        return correlation, future

    def discard(self, correlation: str) -> None:
        """The request never went out: forget it."""
        self._waiting.pop(correlation, None)

    def resolve(self, correlation: str, reply: Envelope) -> None:
        future = self._waiting.pop(correlation, None)
        if future is None or future.done():
            self.late += 1
            return
        future.set_result(reply)

    async def wait(
        self, correlation: str, future: asyncio.Future[Envelope], timeout_s: float, what: str
    ) -> Envelope:
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TransportError(f"{what}: no reply within {timeout_s:g} s") from None
        finally:
            self._waiting.pop(correlation, None)
