"""RabbitMQ, reached by URL (default: the local server on 127.0.0.1:5672).

The orchestrator declares every queue of a run before any service starts (a
message published to a missing queue would vanish without a trace), and deletes
them at the end. Queues also carry ``x-expires``, so a run killed hard leaves
nothing behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from hopbench.brokers.answers import rabbitmq_answer
from hopbench.errors import BrokerUnavailable
from hopbench.transports.plan import Provisioning

QUEUE_EXPIRES_MS = 10 * 60 * 1000
CONNECT_TIMEOUT_S = 5.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def queue_arguments() -> dict[str, Any]:
    return {"x-expires": QUEUE_EXPIRES_MS}


class RabbitMqBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.server_version = "unknown"
        self._connection: AbstractConnection | None = None
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._sampling: AbstractChannel | None = None

    async def connect(self) -> None:
        try:
            self._connection = await asyncio.wait_for(aiormq.connect(self.url), CONNECT_TIMEOUT_S)
        except (OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
            answer = rabbitmq_answer(exc, self.url, CONNECT_TIMEOUT_S)
            hint = (
                ""
                if answer.refused
                else ". Start a local server (`rabbitmq-server -detached`, or "
                "`docker run -d -p 5672:5672 rabbitmq:3`) or pass --rabbitmq-url"
            )
            raise BrokerUnavailable(f"{answer.text}{hint}") from exc
        version = self._connection.server_properties.get("version", b"unknown")
        self.server_version = version.decode() if isinstance(version, bytes) else str(version)

    async def provision(self, plan: Provisioning) -> None:
        """Declare the plan's queues and exchanges (deleted again by ``close``)."""
        await self.declare_queues(plan.rabbitmq_queues, plan.rabbitmq_exchanges)

    async def declare_queues(
        self,
        queues: Mapping[str, bool],
        exchanges: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Queues (name -> durable), and fanout exchanges with their queues bound."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            for name, durable in queues.items():
                await channel.queue_declare(name, durable=durable, arguments=queue_arguments())
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
            if self._sampling is None or self._sampling.is_closed:
                self._sampling = await self._connection.channel()
            for name in queues:
                declared = await self._sampling.queue_declare(name, passive=True)
                found[name] = int(declared.message_count or 0)
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError):
            self._sampling = None
        return found

    async def close(self) -> None:
        if self._connection is None:
            return
        with contextlib.suppress(Exception):  # cleanup must not mask the run's own error
            if self._sampling is not None:
                await self._sampling.close()
            channel = await self._connection.channel()
            for name in self._queues:
                await channel.queue_delete(name)
            for name in self._exchanges:
                await channel.exchange_delete(name)
            await channel.close()
        await self._connection.close()
        self._connection = None
