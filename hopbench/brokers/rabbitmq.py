"""RabbitMQ, reached by URL (default: the local server on 127.0.0.1:5672).

The orchestrator declares every queue of a run before any service starts (a
message published to a missing queue would vanish without a trace), and deletes
them at the end, over a new connection when the broker restarted meanwhile (durable
queues survive a restart). Queues also carry ``x-expires``, so a run killed hard
leaves nothing behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from hopbench.brokers.answers import rabbitmq_answer
from hopbench.brokers.wait import NotYet, cleanup_limits, timed_out, wait_for_broker
from hopbench.config.secrets import redact
from hopbench.errors import BrokerUnavailable
from hopbench.transports.plan import Provisioning

log = logging.getLogger(__name__)
QUEUE_EXPIRES_MS = 10 * 60 * 1000
CLEANUP_TIMEOUT_S = 15.0
RECONNECT_WAIT_S = 10.0  # within the cleanup's time: a broker restarting
START_IT = (
    "Start a local server (`rabbitmq-server -detached`, or "
    "`docker run -d -p 5672:5672 rabbitmq:3`) or pass --rabbitmq-url"
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def queue_arguments() -> dict[str, Any]:
    return {"x-expires": QUEUE_EXPIRES_MS}


class _QuietConnectFailures(logging.Filter):
    """aiormq logs every failed connection attempt as an ERROR; hopbench says itself
    what it waits for and why it gave up (hopbench.brokers.wait)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_QuietConnectFailures())


class RabbitMqBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.server_version = "unknown"
        self._connection: AbstractConnection | None = None
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._sampling: AbstractChannel | None = None

    async def connect(self, wait_s: float = 0.0, say: Callable[[str], None] = log.info) -> None:
        """Connect, waiting up to ``wait_s`` for a server that is still starting; a
        server that refuses the credentials or the vhost is an error at once."""
        where = redact(self.url)
        self._connection = await wait_for_broker(
            "RabbitMQ", where, self._open, wait_s=wait_s, say=say, fix=START_IT
        )
        version = self._connection.server_properties.get("version", b"unknown")
        self.server_version = version.decode() if isinstance(version, bytes) else str(version)

    async def _open(self, timeout_s: float) -> AbstractConnection:
        """One connection attempt: NotYet when nothing (or nothing ready) answers; a
        broker that refuses the credentials or the vhost is an error at once."""
        try:
            return await asyncio.wait_for(aiormq.connect(self.url), timeout_s)
        except (OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
            answer = rabbitmq_answer(exc, redact(self.url), timeout_s)
            if answer.refused:
                raise BrokerUnavailable(answer.text) from exc
            raise NotYet(answer.text) from exc

    async def provision(self, plan: Provisioning) -> None:
        """Declare the plan's queues and exchanges (deleted again by ``close``)."""
        await self.declare_queues(
            plan.rabbitmq_queues, plan.rabbitmq_exchanges, plan.rabbitmq_queue_types
        )

    async def declare_queues(
        self,
        queues: Mapping[str, bool],
        exchanges: Mapping[str, Sequence[str]] | None = None,
        types: Mapping[str, str] | None = None,
    ) -> None:
        """Queues (name -> durable; types: name -> x-queue-type where not classic), and
        fanout exchanges with their queues bound."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            for name, durable in queues.items():
                arguments = queue_arguments()
                if types and name in types:
                    arguments["x-queue-type"] = types[name]
                await channel.queue_declare(name, durable=durable, arguments=arguments)
                self._queues.append(name)
            for exchange, bound in (exchanges or {}).items():
                durable = any(queues[q] for q in bound)
                await channel.exchange_declare(
                    exchange, exchange_type="fanout", durable=durable, auto_delete=True
                )
                self._exchanges.append(exchange)
                for queue in bound:
                    await channel.queue_bind(queue, exchange)
        finally:
            await channel.close()

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        default = 5671 if parts.scheme == "amqps" else 5672
        return parts.hostname or "localhost", parts.port or default

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        where = f"{self.server_version} at {host}:{port}"
        return {
            "kind": "rabbitmq",
            "version": self.server_version,
            "url": redact(self.url),
            "where": where,
            "label": f"rabbitmq ({where})",
        }

    @property
    def queues(self) -> list[str]:
        """The queues this run declared."""
        return list(self._queues)

    async def depths(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Messages ready in each queue (not those delivered and awaiting their ack),
        by a passive declare: plain AMQP, no management plugin. None: not read (a
        missing queue closes the channel; the next call opens another)."""
        found: dict[str, int | None] = dict.fromkeys(queues)
        if self._connection is None:
            return found
        try:
            if self._connection.is_closed:  # the broker restarted: a new connection
                self._sampling = None
                self._connection = await asyncio.wait_for(aiormq.connect(self.url), 1)
            if self._sampling is None or self._sampling.is_closed:
                self._sampling = await self._connection.channel()
            for name in queues:
                declared = await self._sampling.queue_declare(name, passive=True)
                found[name] = int(declared.message_count or 0)
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError, RuntimeError):
            self._sampling = None  # RuntimeError: aiormq's "connection closed"
        return found

    async def close(self) -> None:
        """Delete this run's queues and exchanges (over a new connection if the broker
        restarted since) and hang up. A best effort, bounded in time, that never masks
        the run's own error: what could not be deleted is logged, and expires anyway."""
        if self._connection is None:
            return
        if self._sampling is not None:
            with contextlib.suppress(Exception):
                await self._sampling.close()
            self._sampling = None
        cleanup_s, reconnect_s = cleanup_limits(CLEANUP_TIMEOUT_S, RECONNECT_WAIT_S)
        try:
            await asyncio.wait_for(self._delete_all(reconnect_s), cleanup_s)
        except (OSError, aiormq.exceptions.AMQPError, TimeoutError, BrokerUnavailable) as exc:
            log.warning(
                "could not delete the run's queues %s and exchanges %s at %s (%s); the queues "
                "expire %d min after their last use",
                self._queues, self._exchanges, redact(self.url), timed_out(exc),
                QUEUE_EXPIRES_MS // 60_000,
            )  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _delete_all(self, reconnect_s: float) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:  # the broker restarted or hung up
            connection = self._connection = await wait_for_broker(
                "RabbitMQ", redact(self.url), self._open, wait_s=reconnect_s, say=log.info,
                fix="its queues expire on their own",
            )  # fmt: skip
        channel = await connection.channel()
        for name in self._queues:
            await channel.queue_delete(name)
        for name in self._exchanges:
            await channel.exchange_delete(name)
        await channel.close()
        self._queues, self._exchanges = [], []
