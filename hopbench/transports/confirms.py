"""Publisher confirms awaited in batches (``rabbitmq_confirm_batch``).

One by one (a batch of 1), a publish returns when the broker has confirmed it. In
batches of N, a publish returns once handed to the client, and every Nth publish on an
edge waits for the confirms of its whole batch: fewer waits, more throughput per
publisher, and a message the broker refuses or a connection loses is known only at the
end of its batch. Such a failure is counted as an error of the transport (named in the
results), not raised to the message that happened to close the batch. What is still
unconfirmed when the transport closes is awaited then. A publisher whose publish returns
early takes its next message at once: the backlog moves from the broker's queue into
the publisher (at most ``prefetch`` handlers, each waiting on one batch of N), and the
hop's transit shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hopbench.errors import TransportError


class ConfirmBatches:
    def __init__(self, failed: Callable[[str], None]) -> None:
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._failed = failed  # counts one error (hopbench.transports.base.Transport.failed)

    async def send(self, key: str, batch: int, publish: Coroutine[Any, Any, None]) -> None:
        """Start publish; when it makes a batch of ``batch`` on ``key``, await them all."""
        pending = self._pending.setdefault(key, [])
        pending.append(asyncio.ensure_future(publish))
        if len(pending) >= batch:
            self._pending[key] = []
            await self._settle(pending)

    @property
    def unconfirmed(self) -> int:
        return sum(len(p) for p in self._pending.values())

    async def flush(self) -> None:
        """Await every publish still unconfirmed (each has its own timeout)."""
        pending = [f for batch in self._pending.values() for f in batch]
        self._pending.clear()
        await self._settle(pending)

    async def _settle(self, pending: list[asyncio.Future[None]]) -> None:
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, TransportError):
                self._failed(f"{outcome} (a batched publisher confirm)")
            elif isinstance(outcome, BaseException):
                self._failed(f"RabbitMQ publish failed: {outcome!r} (a batched publisher confirm)")
