"""RabbitMQ over aiormq: fire-and-forget, publish-subscribe and request-reply.

Fire-and-forget: a queue per edge on the default exchange; the target's replicas
consume it, so each message is handled by one of them. Publish-subscribe: one
fanout exchange per publishing service, a queue per subscriber bound to it: one
publish, every subscriber gets a copy. Request-reply: the request goes to the
edge's queue with ``reply_to`` and a correlation id; the reply comes back by direct
reply-to (``amq.rabbitmq.reply-to``: no reply queue to declare, replies at most once),
or with ``rabbitmq_reply=queue`` through an exclusive reply queue of the caller's.

aiormq, not aio-pika or pika: measured on a 2-core machine
(bench/rabbitmq_clients/, docs/findings.md) it used about 1.5x less CPU per
message than aio-pika and sustained more, and pika's blocking client would need
threads beside the event loop. Publisher confirms are off unless
``rabbitmq_confirms`` is set (pika's default; aio-pika's is on); the setting is
written into the results; with ``rabbitmq_confirm_batch`` N a publish waits only at
every Nth message, for the whole batch (hopbench.transports.confirms). Consumers ack
after the handler finishes, with at most ``prefetch`` messages in flight.

Without confirms, the publishes handed over in one turn of the event loop are written
together, by one task: each handed to aiormq without waiting for its write, the last
one waiting until the connection has written it (frames go out in order: then every
one of them has been written), and each publisher is told that outcome (``send``: a
callback per message; ``publish``: awaits it). One write per batch, not one task and
one write each. With confirms, each publish is its own task, waiting for its confirm.

Recovery: when the connection drops (a broker restart, a network fault), a watcher
opens a new connection with the same channels and consumers, trying again every
``RECONNECT_EVERY_S``. A send meanwhile waits for it, within the edge's request
timeout. With publisher confirms, a publish whose confirmation never came is sent
again on the new connection (at least once: a copy may be counted as duplicated);
without confirms, a batch whose write failed with the connection is written again
whole on the new one (its messages that had gone out arrive twice, counted as
duplicated), and what was written into a connection that dropped is lost, and the
results count it. Unacknowledged deliveries come back from the broker (redelivered).

A message that is not an envelope of this run (hopbench.transports.admission), on
an in-edge's queue or the reply path, is counted as rejected, published unchanged
to the run's dead-letter exchange (a fanout exchange bound to the run's dead-letter
queue, both provisioned with the run's plan and deleted with it) with headers saying
where it came from and why, and acknowledged; consuming goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import cast

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic
from pamqp.common import FieldTable

from hopbench import clock
from hopbench.config.runspec import RunSpec
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports import codec
from hopbench.transports.base import Decoder, Handler, Settled, Transport
from hopbench.transports.confirms import ConfirmBatches
from hopbench.transports.context import TransportContext
from hopbench.transports.plan import Provisioning
from hopbench.transports.replies import PendingReplies

log = logging.getLogger(__name__)
# ChannelInvalidStateError (a RuntimeError): the channel closed with its connection
AMQP_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    OSError,
    TimeoutError,
)
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
RECONNECT_EVERY_S = 0.5
REPLY = "reply"  # the channel requests go out on (and direct reply-to comes back on)
# on a dead-lettered message: why it was rejected, where it was read, and by whom
REJECTED = "hb-rejected"
READ_FROM = "hb-read-from"
READ_BY = "hb-read-by"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one out-edge's publishes go and how, worked out once per edge."""

    edge: str
    exchange: str
    routing_key: str
    content_type: str
    content_encoding: str | None
    delivery_mode: int
    confirms: bool
    timeout_s: float

    def properties(self) -> Basic.Properties:
        """A message's own (aiormq writes a message id into them)."""
        return Basic.Properties(
            content_type=self.content_type,
            content_encoding=self.content_encoding,
            delivery_mode=self.delivery_mode,
        )


def queue_name(run_id: str, edge: Edge) -> str:
    """One queue per edge: the target's replicas compete for its messages (for
    publish-subscribe, the subscriber's queue bound to the publisher's exchange)."""
    return f"hb-{run_id}-{edge.source}-{edge.target}"


def exchange_name(run_id: str, edge: Edge) -> str:
    """Publish-subscribe over RabbitMQ: one fanout exchange per publishing service."""
    return f"hb-{run_id}-{edge.source}"


def dead_letter_name(run_id: str) -> str:
    """The run's dead-letter exchange, and the queue bound to it: one name for both."""
    return f"hb-{run_id}-dead-letters"


def plan(spec: RunSpec) -> Provisioning:
    """Queue -> durable (per the edge's own setting), and fanout exchange -> the
    subscriber queues bound to it; and the run's dead-letter exchange and queue."""
    dead = dead_letter_name(spec.run_id)
    queues: dict[str, bool] = {dead: False}
    bound: dict[str, tuple[str, ...]] = {dead: (dead,)}
    types: dict[str, str] = {}
    for edge in spec.resolved.edges:
        if edge.mode != "rabbitmq":
            continue
        queue = queue_name(spec.run_id, edge)
        queues[queue] = spec.for_edge(edge).rabbitmq_durable
        if spec.for_edge(edge).rabbitmq_queue_type != "classic":
            types[queue] = spec.for_edge(edge).rabbitmq_queue_type
        if edge.pattern == "publish-subscribe":
            exchange = exchange_name(spec.run_id, edge)
            bound[exchange] = (*bound.get(exchange, ()), queue)
    return Provisioning(
        rabbitmq_queues=queues, rabbitmq_exchanges=bound, rabbitmq_queue_types=types
    )


class RabbitMqTransport(Transport):
    mode = "rabbitmq"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        url = context.rabbitmq_url
        if url is None:
            raise TransportError("a rabbitmq edge needs a broker URL, and the run has none")
        self.url = url
        self._connection: AbstractConnection | None = None
        self._publish_channels: dict[bool, AbstractChannel] = {}  # by publisher confirms
        self._reply_channel: AbstractChannel | None = None  # requests go out on it too
        self._consumers: list[tuple[AbstractChannel, str]] = []
        self._connected = asyncio.Event()  # clear while the connection is being recovered
        self._serving = True  # False once stop_serving: no consumer comes back
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self.reconnects = 0
        self._dead_channel: AbstractChannel | None = None  # opened at the first rejection
        self._dead_lock = asyncio.Lock()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.calls_prefix = f"{context.service}-{context.replica}"
        self.calls = PendingReplies(self.calls_prefix)
        self.replies = self.calls
        self._reply_to = DIRECT_REPLY_TO
        self.batches = ConfirmBatches(self.failed)  # rabbitmq_confirm_batch > 1
        self._routes: dict[int, Route] = {}  # by out-edge index
        # publishes without confirms handed over and not yet written, and their writer
        self._unwritten: list[tuple[Route, bytes, Settled]] = []
        self._writing: asyncio.Task[None] | None = None

    def _mine(self, edge: Edge) -> bool:
        """An edge of this mode that uses this library (rabbitmq_client), not pika."""
        return edge.mode == self.mode and self.settings_for(edge).rabbitmq_client == "aiormq"

    async def start(self) -> None:
        try:
            await self._open()
        except AMQP_ERRORS as exc:
            raise TransportError(f"RabbitMQ at {self.url.split('@')[-1]}: {exc!r}") from exc
        self._watcher = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """Open the connection again whenever it drops, until the transport closes."""
        while not self._closed:
            assert self._connection is not None
            with contextlib.suppress(Exception):
                await self._connection.closing
            if self._closed:
                return
            self._connected.clear()
            log.warning("RabbitMQ connection lost; reconnecting to %s", self.url.split("@")[-1])
            while not self._closed:
                try:
                    await self._open()
                    break
                except AMQP_ERRORS as exc:
                    log.info("RabbitMQ not back yet: %r", exc)
                    if self._connection is not None and not self._connection.is_closed:
                        with contextlib.suppress(*AMQP_ERRORS):
                            await self._connection.close()
                    await asyncio.sleep(RECONNECT_EVERY_S)
            self.reconnects += 1
            log.warning("RabbitMQ connection recovered (%d)", self.reconnects)

    async def _open(self) -> None:
        """A connection, its publishing channels, the reply consumer and one consumer
        per in-edge: at the start, and again after the connection dropped."""
        outs = [e for e in self.context.topology.out_edges(self.context.service) if self._mine(e)]
        self._consumers.clear()
        self._connection = await aiormq.connect(self.url)
        confirms = {self.settings_for(e).rabbitmq_confirms for e in outs if not e.is_sync}
        if any(e.is_sync for e, _ in self.handlers.values()):
            confirms.add(self.settings.rabbitmq_confirms)  # replies: the run's setting
        for confirm in confirms:
            self._publish_channels[confirm] = await self._connection.channel(
                publisher_confirms=confirm
            )
        if any(e.is_sync for e in outs):
            # Direct reply-to: consume the pseudo-queue (no ack) on the channel that
            # publishes the requests. Or a reply queue of this process's own.
            self._reply_channel = await self._connection.channel(publisher_confirms=False)
            if self.settings.rabbitmq_reply == "queue":
                declared = await self._reply_channel.queue_declare(
                    "", exclusive=True, auto_delete=True
                )
                self._reply_to = str(declared.queue)
            await self._reply_channel.basic_consume(self._reply_to, self._on_reply, no_ack=True)
        for edge, handler in self.handlers.values() if self._serving else ():
            channel = await self._connection.channel()
            await channel.basic_qos(prefetch_count=self.settings_for(edge).prefetch)
            ok = await channel.basic_consume(
                queue_name(self.context.run_id, edge), self._consumer(edge, handler, channel)
            )
            self._consumers.append((channel, str(ok.consumer_tag)))
        self._connected.set()

    def _consumer(
        self, edge: Edge, handler: Handler, channel: AbstractChannel
    ) -> aiormq.abc.ConsumerCallback:
        async def on_message(message: DeliveredMessage) -> None:
            self._in_flight += 1
            self._idle.clear()
            try:
                properties = message.header.properties
                env = self.admit(message.body, edge.name, _decoder(properties))
                if not isinstance(env, Envelope):  # rejected: dead-lettered, then acked
                    await self.reject(message.body, edge.name, env)
                    return
                reply = await handler(edge, env, clock.now_ns())
                if edge.is_sync and reply is not None and properties.reply_to:
                    await self._reply(edge, reply, properties)
            except TransportError:
                pass  # the runtime counted and logged it; the caller times out
            except Exception:  # a bug in a handler: keep consuming
                log.exception("%s: handler failed", edge.name)
            finally:
                try:
                    await channel.basic_ack(message.delivery_tag)  # type: ignore[arg-type]
                except AMQP_ERRORS as exc:  # its channel closed: it comes back, redelivered
                    log.warning("%s: ack failed: %r", edge.name, exc)
                finally:  # also when aiormq cancels the task with its dropped channel
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self._idle.set()

        return on_message

    def _properties(self, edge: Edge, **fields: object) -> Basic.Properties:
        """The edge's content type and encoding, and the given properties."""
        settings = self.settings_for(edge)
        encoding = settings.compression if settings.compression != "none" else None
        return Basic.Properties(
            content_type=codec.CONTENT_TYPES[settings.encoding],
            content_encoding=encoding,
            **fields,  # type: ignore[arg-type]
        )

    async def _reply(self, edge: Edge, reply: Envelope, properties: Basic.Properties) -> None:
        try:
            await self._send(
                "",
                properties.reply_to or "",
                self.pack(edge, reply, reply=True),
                self._properties(edge, correlation_id=properties.correlation_id),
                self.settings.rabbitmq_confirms,
                self.settings.request_timeout_s,
            )
        except TransportError as exc:
            self.failed(f"{edge.name}: the reply could not be sent: {exc}")

    async def _on_reply(self, message: DeliveredMessage) -> None:
        properties = message.header.properties
        decode = _decoder(properties)
        reply = await self.receive(message.body, f"replies ({self._reply_to})", decode)
        if reply is not None:
            self.calls.resolve(properties.correlation_id or "", reply)

    async def dead_letter(self, body: bytes, where: str, why: str) -> None:
        """Publish a rejected message, unchanged, to the run's dead-letter exchange."""
        if self._connection is None:
            return
        async with self._dead_lock:
            if self._dead_channel is None or self._dead_channel.is_closed:
                self._dead_channel = await self._connection.channel(publisher_confirms=False)
        headers: FieldTable = {REJECTED: why, READ_FROM: where, READ_BY: self.calls_prefix}
        await self._dead_channel.basic_publish(
            body,
            exchange=dead_letter_name(self.context.run_id),
            properties=Basic.Properties(headers=headers),
        )

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        if self._reply_channel is None:
            raise TransportError(f"{edge.name}: no RabbitMQ reply channel")
        correlation, future = self.calls.open()
        properties = self._properties(
            edge,
            correlation_id=correlation,
            reply_to=self._reply_to,
            delivery_mode=self._delivery_mode(edge),
        )
        timeout_s = self.settings_for(edge).request_timeout_s
        body = self.pack(edge, env)
        try:
            await self._send(
                "", queue_name(self.context.run_id, edge), body, properties, REPLY, timeout_s
            )
        except TransportError:
            self.calls.discard(correlation)
            raise
        return await self.calls.wait(
            correlation, future, self.settings_for(edge).request_timeout_s, edge.name
        )

    def _route(self, edge: Edge) -> Route:
        settings = self.settings_for(edge)
        if edge.pattern == "publish-subscribe":
            exchange, key = exchange_name(self.context.run_id, edge), ""
        else:
            exchange, key = "", queue_name(self.context.run_id, edge)
        route = Route(
            edge=edge.name,
            exchange=exchange,
            routing_key=key,
            content_type=codec.CONTENT_TYPES[settings.encoding],
            content_encoding=settings.compression if settings.compression != "none" else None,
            delivery_mode=self._delivery_mode(edge),
            confirms=settings.rabbitmq_confirms,
            timeout_s=settings.request_timeout_s,
        )
        self._routes[edge.index] = route
        return route

    async def send(self, edge: Edge, env: Envelope, settled: Settled) -> None:
        route = self._routes.get(edge.index) or self._route(edge)
        if route.confirms:
            await super().send(edge, env, settled)  # a task each, awaiting its confirm
            return
        self._unwritten.append((route, self.pack(edge, env), settled))
        if self._writing is None:  # the first of this turn's batch starts its writer
            self._writing = asyncio.create_task(self._write())

    async def publish(self, edge: Edge, env: Envelope) -> None:
        route = self._routes.get(edge.index) or self._route(edge)
        if not route.confirms:
            await self.publish_by_send(edge, env)  # written with the turn's batch
            return
        settings = self.settings_for(edge)
        properties = route.properties()
        exchange, key = route.exchange, route.routing_key
        if settings.rabbitmq_confirm_batch > 1:
            body = self.pack(edge, env)  # now: the caller stamps env again before it is sent
            send = self._send(exchange, key, body, properties, True, route.timeout_s)
            await self.batches.send(edge.name, settings.rabbitmq_confirm_batch, send)
            return
        await self._send(exchange, key, self.pack(edge, env), properties, True, route.timeout_s)

    async def _write(self) -> None:
        """Write the publishes handed over so far, a batch at a time, until none is left;
        tell each its batch's outcome."""
        try:
            while self._unwritten:
                batch, self._unwritten = self._unwritten, []
                why: str | None = None
                try:
                    await self._write_batch(batch)
                except TransportError as exc:
                    why = str(exc)
                except Exception as exc:  # a bug: still each message's failure
                    log.exception("writing %d RabbitMQ publishes", len(batch))
                    why = f"RabbitMQ publish failed: {exc!r}"
                for _, _, settled in batch:
                    settled(why)
        finally:
            self._writing = None

    async def _write_batch(self, batch: list[tuple[Route, bytes, Settled]]) -> None:
        """Hand every message to aiormq, waiting only for the last one's write; with the
        connection dropped, the whole batch again on the new one, within the timeout."""
        timeout_s = min(route.timeout_s for route, _, _ in batch)
        last = len(batch) - 1
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self._connected.wait()
                    found = self._publish_channels.get(False)
                    if found is None:
                        where = batch[0][0].edge
                        raise TransportError(f"no RabbitMQ channel to publish on {where}")
                    # the channel's class: its basic_publish takes wait (aiormq >= 6.8)
                    channel = cast(aiormq.Channel, found)
                    try:
                        for i, (route, body, _) in enumerate(batch):
                            await channel.basic_publish(
                                body,
                                exchange=route.exchange,
                                routing_key=route.routing_key,
                                properties=route.properties(),
                                wait=i == last,
                            )
                        return
                    except AMQP_ERRORS as exc:
                        self._publish_failed(exc)
        except TimeoutError:
            where = batch[0][0].edge
            raise TransportError(
                f"RabbitMQ publish on {where}: not written within {timeout_s:g} s"
            ) from None

    def _delivery_mode(self, edge: Edge) -> int:
        return 2 if self.settings_for(edge).rabbitmq_durable else 1  # 2: persistent

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        which: bool | str,  # the publishing channel: with confirms or not, or REPLY
        timeout_s: float,
    ) -> None:
        """Publish on the current connection; while it is being recovered, wait for the
        new one and publish again there (with confirms: until one is confirmed), all
        within timeout_s."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self._connected.wait()
                    channel = self._reply_channel if which == REPLY else None
                    channel = channel or self._publish_channels.get(which is True)
                    if channel is None:
                        raise TransportError(
                            f"no RabbitMQ channel to publish to {exchange or routing_key}"
                        )
                    try:
                        confirmation = await channel.basic_publish(
                            body, exchange=exchange, routing_key=routing_key, properties=properties
                        )
                        break
                    except AMQP_ERRORS as exc:
                        self._publish_failed(exc)
        except TimeoutError:
            raise TransportError(
                f"RabbitMQ publish to {exchange or routing_key}: the connection was not "
                f"back within {timeout_s:g} s"
            ) from None
        if isinstance(confirmation, Basic.Nack):
            raise TransportError(f"RabbitMQ refused the message to {exchange or routing_key}")

    def _publish_failed(self, exc: BaseException) -> None:
        """A publish failed: TransportError, unless the connection dropped; then wait
        for the watcher to recover it (it sets _connected again) and publish there."""
        if self._closed or not self._dropped():
            raise TransportError(f"RabbitMQ publish failed: {exc!r}") from exc
        self._connected.clear()

    def _dropped(self) -> bool:
        """The connection is gone (the broker restarted, the network failed)."""
        return self._connection is None or self._connection.is_closed

    async def stop_serving(self) -> None:
        self._serving = False
        for channel, tag in self._consumers:
            try:
                await channel.basic_cancel(tag)
            except AMQP_ERRORS as exc:
                log.warning("cancelling consumer %s: %r", tag, exc)
        self._consumers.clear()
        await self._idle.wait()

    async def close(self) -> None:
        await self.stop_serving()
        await self.batches.flush()
        if self._writing is not None:  # each write is bounded by its timeout
            await asyncio.gather(self._writing, return_exceptions=True)
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._connection is not None:
            with contextlib.suppress(*AMQP_ERRORS):
                await self._connection.close()
            self._connection = None


_ENCODINGS = {content_type: name for name, content_type in codec.CONTENT_TYPES.items()}


def _decoder(properties: Basic.Properties) -> Decoder:
    """How a message's body decodes: by its content type and encoding."""
    return _decoder_for(properties.content_type, properties.content_encoding)


@functools.lru_cache(maxsize=64)  # made once per kind of body, not once per message
def _decoder_for(content_type: str | None, content_encoding: str | None) -> Decoder:
    encoding = _ENCODINGS.get(content_type or "", "protobuf")
    compression = content_encoding or "none"
    return lambda body: codec.decode(codec.decompress(body, compression), encoding)
