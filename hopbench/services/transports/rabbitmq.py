"""RabbitMQ: fire-and-forget to a queue per edge, over aiormq.

aiormq, not aio-pika or pika: measured on this machine (bench/rabbitmq_clients.py,
README) it used about 1.5x less CPU per message than aio-pika and sustained more,
and pika's blocking client would need threads beside the event loop.

The target's replicas consume the same queue, so each message is handled by one
of them. Publisher confirms are off unless ``rabbitmq_confirms`` is set (pika's
default; aio-pika's is on): the setting is written into the results. Consumers
ack after the handler finishes, with at most ``prefetch`` messages in flight.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.services.transports.base import (
    Handler,
    Process,
    Transport,
    TransportError,
    queue_name,
)
from hopbench.topology import Edge

log = logging.getLogger(__name__)
AMQP_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError)


class RabbitMqTransport(Transport):
    mode = "rabbitmq"

    def __init__(self, process: Process) -> None:
        super().__init__(process)
        url = process.spec.rabbitmq_url
        if url is None:
            raise TransportError("a rabbitmq edge needs a broker URL, and the run has none")
        self.url = url
        self._connection: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractChannel, str]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._delivery_mode = 2 if self.settings.rabbitmq_durable else 1

    async def start(self) -> None:
        try:
            self._connection = await aiormq.connect(self.url)
            if self.publishes():
                self._publish_channel = await self._connection.channel(
                    publisher_confirms=self.settings.rabbitmq_confirms
                )
            for edge, handler in self.handlers.values():
                channel = await self._connection.channel()
                await channel.basic_qos(prefetch_count=self.settings.prefetch)
                ok = await channel.basic_consume(
                    queue_name(self.process.spec, edge), self._consumer(edge, handler, channel)
                )
                self._consumers.append((channel, str(ok.consumer_tag)))
        except AMQP_ERRORS as exc:
            raise TransportError(f"RabbitMQ at {self.url.split('@')[-1]}: {exc!r}") from exc

    def _consumer(
        self, edge: Edge, handler: Handler, channel: AbstractChannel
    ) -> aiormq.abc.ConsumerCallback:
        async def on_message(message: DeliveredMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            try:
                await handler(edge, Envelope.FromString(message.body))
            except Exception:  # the runtime counts its own errors; keep consuming
                log.exception("%s: handler failed", edge.name)
            finally:
                try:
                    await channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]
                except AMQP_ERRORS as exc:
                    log.warning("%s: ack failed: %r", edge.name, exc)
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

        return on_message

    async def publish(self, edge: Edge, env: Envelope) -> None:
        if self._publish_channel is None:
            raise TransportError(f"{edge.name}: no RabbitMQ publishing channel")
        try:
            confirmation = await self._publish_channel.basic_publish(
                env.SerializeToString(),
                routing_key=queue_name(self.process.spec, edge),
                properties=Basic.Properties(delivery_mode=self._delivery_mode),
            )
        except AMQP_ERRORS as exc:
            raise TransportError(f"{edge.name}: RabbitMQ publish failed: {exc!r}") from exc
        if isinstance(confirmation, Basic.Nack):
            raise TransportError(f"{edge.name}: RabbitMQ refused the message (nack)")

    async def stop_serving(self) -> None:
        for channel, tag in self._consumers:
            try:
                await channel.basic_cancel(tag)
            except AMQP_ERRORS as exc:
                log.warning("cancelling consumer %s: %r", tag, exc)
        self._consumers.clear()
        await self._idle.wait()

    async def close(self) -> None:
        await self.stop_serving()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
