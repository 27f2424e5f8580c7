"""RabbitMQ over pika: a BlockingConnection in a thread of its own, handing off to the
event loop (the edge setting ``rabbitmq_client: pika``).

The queues, exchanges, patterns and settings are the aiormq transport's
(hopbench.transports.rabbitmq): the same names, the same ack after the handler, at most
``prefetch`` in flight, direct reply-to or an exclusive reply queue, confirms and
persistence per edge. Only the library differs, and how it meets asyncio: pika's
BlockingConnection belongs to the one thread that runs it. The event loop asks that
thread to publish, reply and ack with ``add_callback_threadsafe`` (the connection's one
thread-safe call) and gets the outcome back with ``call_soon_threadsafe``; a consumed
message is decoded and stamped as arrived in that thread, then handed to the loop, so a
hop's wait between arrived and received holds the hand-off. With publisher confirms, a
publish blocks the thread until its confirmation (pika's blocking API has no other way),
so every other publish, ack and delivery of the process waits behind it.

No recovery: when the connection drops, the sends fail from then on and the results
count them (the aiormq transport reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pika
import pika.exceptions

from hopbench import clock
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Handler, Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.rabbitmq import (
    DIRECT_REPLY_TO,
    READ_BY,
    READ_FROM,
    REJECTED,
    dead_letter_name,
    exchange_name,
    queue_name,
)
from hopbench.transports.replies import PendingReplies

log = logging.getLogger(__name__)
T = TypeVar("T")
PIKA_ERRORS = (pika.exceptions.AMQPError, OSError)
POLL_S = 0.5  # the thread looks at its stop flag at least this often


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller gave up (a timeout)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PikaRabbitMqTransport(Transport):
    mode = "rabbitmq"
    library = "pika"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        if context.rabbitmq_url is None:
            raise TransportError("a rabbitmq edge needs a broker URL, and the run has none")
        self.url = context.rabbitmq_url
        self.connection_name = f"hopbench-{context.run_id}-{context.service}-{context.replica}"
        self.calls = PendingReplies(f"{context.service}-{context.replica}-pika")
        self.replies = self.calls
        self._reply_to = DIRECT_REPLY_TO
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: Any = None  # pika.BlockingConnection, used in its thread only
        self._publish: dict[bool, Any] = {}  # by publisher confirms
        self._reply_channel: Any = None  # requests go out on it, replies come back on it
        self._consumers: list[tuple[Any, str]] = []
        self._stop = threading.Event()
        self._pending: set[asyncio.Future[Any]] = set()  # the thread's work not yet done
        self._replying: set[asyncio.Task[None]] = set()  # replies being screened
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _mine(self, edge: Edge) -> bool:
        return edge.mode == self.mode and self.settings_for(edge).rabbitmq_client == self.library

    # --- the connection's thread -------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"pika-{self.context.service}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except PIKA_ERRORS as exc:
            raise TransportError(f"RabbitMQ at {self.url.split('@')[-1]}: {exc!r}") from exc

    def _run(self, ready: asyncio.Future[None]) -> None:
        """The thread: connect, open channels and consumers, then serve the connection's
        events and the loop's requests until stopped."""
        assert self._loop is not None
        try:
            parameters = pika.URLParameters(self.url)
            # the name the broker shows (rabbitmqctl list_connections client_properties)
            parameters.client_properties = {"connection_name": self.connection_name}
            self._connection = pika.BlockingConnection(parameters)
            self._open()
        except BaseException as exc:
            self._loop.call_soon_threadsafe(_settle, ready, None, exc)
            self._close_connection()
            return
        self._loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while not self._stop.is_set():
                self._connection.process_data_events(time_limit=POLL_S)
        except BaseException as exc:  # the connection dropped: later sends fail
            if not self._stop.is_set():
                log.warning("RabbitMQ (pika) connection lost: %r", exc)
                self._loop.call_soon_threadsafe(
                    self.failed, f"RabbitMQ (pika) connection lost: {exc!r}"
                )
        finally:
            self._close_connection()
            self._loop.call_soon_threadsafe(self._fail_pending)

    def _fail_pending(self) -> None:
        """The thread has ended: what it had not done yet never will be."""
        for future in self._pending:
            _settle(future, None, TransportError("the RabbitMQ (pika) connection is closed"))
        self._pending.clear()

    def _open(self) -> None:
        outs = [e for e in self.context.topology.out_edges(self.context.service) if self._mine(e)]
        confirms = {self.settings_for(e).rabbitmq_confirms for e in outs if not e.is_sync}
        if any(e.is_sync for e, _ in self.handlers.values()):
            confirms.add(self.settings.rabbitmq_confirms)  # replies: the run's setting
        for confirm in confirms:
            channel = self._connection.channel()
            if confirm:
                channel.confirm_delivery()
            self._publish[confirm] = channel
        if any(e.is_sync for e in outs):
            self._reply_channel = self._connection.channel()
            if self.settings.rabbitmq_reply == "queue":
                declared = self._reply_channel.queue_declare("", exclusive=True, auto_delete=True)
                self._reply_to = str(declared.method.queue)
            self._reply_channel.basic_consume(
                self._reply_to, on_message_callback=self._on_reply, auto_ack=True
            )
        for edge, handler in self.handlers.values():
            channel = self._connection.channel()
            channel.basic_qos(prefetch_count=self.settings_for(edge).prefetch)
            tag = channel.basic_consume(
                queue_name(self.context.run_id, edge),
                on_message_callback=self._consumer(edge, handler),
            )
            self._consumers.append((channel, tag))

    def _close_connection(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(*PIKA_ERRORS):
                self._connection.close()

    def _consumer(self, edge: Edge, handler: Handler) -> Callable[..., None]:
        loop = self._loop
        assert loop is not None

        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            arrived_ns = clock.now_ns()  # screened and decoded on the loop (Transport.receive)
            loop.call_soon_threadsafe(
                self._dispatch, edge, handler, channel, method.delivery_tag, properties, body,
                arrived_ns,
            )  # fmt: skip

        return on_message

    def _on_reply(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._reply, properties.correlation_id, body)

    def _in_thread(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Run work in the connection's thread; its outcome comes back as a future."""
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                result = work()
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        if self._connection is None or self._stop.is_set():
            raise TransportError("the RabbitMQ (pika) connection is closed")
        try:
            self._connection.add_callback_threadsafe(run)
        except PIKA_ERRORS as exc:
            raise TransportError(f"the RabbitMQ (pika) connection is closed: {exc!r}") from exc
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    # --- the event loop's side ---------------------------------------------------

    def _reply(self, correlation: str, body: bytes) -> None:
        """A reply, screened like every message received (a rejected one is counted)."""
        task = asyncio.create_task(self._resolve(correlation, body))
        self._replying.add(task)
        task.add_done_callback(self._replying.discard)

    async def _resolve(self, correlation: str, body: bytes) -> None:
        envelope = await self.receive(body, f"replies ({self._reply_to})")
        if envelope is not None:
            self.calls.resolve(correlation, envelope)

    async def dead_letter(self, body: bytes, where: str, why: str) -> None:
        """Publish a rejected message, unchanged, to the run's dead-letter exchange."""
        # a caller with only request-reply edges has just the channel its requests go on
        channel = next(iter(self._publish.values()), self._reply_channel)
        if channel is None:
            return
        by = f"{self.context.service}-{self.context.replica}"  # as the aiormq transport
        headers = {REJECTED: why, READ_FROM: where, READ_BY: by}
        exchange = dead_letter_name(self.context.run_id)
        properties = pika.BasicProperties(headers=headers)
        async with asyncio.timeout(self.settings.request_timeout_s):
            await self._in_thread(lambda: channel.basic_publish(exchange, "", body, properties))

    def _dispatch(
        self,
        edge: Edge,
        handler: Handler,
        channel: Any,
        delivery_tag: int,
        properties: Any,
        body: bytes,
        arrived_ns: int,
    ) -> None:
        self._in_flight += 1
        self._idle.clear()
        task = asyncio.create_task(
            self._handle(edge, handler, channel, delivery_tag, properties, body, arrived_ns)
        )
        task.add_done_callback(self._done)

    def _done(self, _task: asyncio.Task[None]) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _handle(
        self,
        edge: Edge,
        handler: Handler,
        channel: Any,
        delivery_tag: int,
        properties: Any,
        body: bytes,
        arrived_ns: int,
    ) -> None:
        reply: Envelope | None = None
        env = await self.receive(body, edge.name)
        try:
            if env is not None:  # else rejected: counted, dead-lettered, acknowledged
                reply = await handler(edge, env, arrived_ns)
        except TransportError:
            pass  # the runtime counted and logged it; the caller times out
        except Exception:  # a bug in a handler: keep consuming
            log.exception("%s: handler failed", edge.name)
        reply_to = properties.reply_to if edge.is_sync and reply is not None else None
        body = reply.SerializeToString() if reply is not None else b""
        publish = self._publish.get(self.settings.rabbitmq_confirms)

        def reply_and_ack() -> None:  # one hand-off for both
            try:
                if reply_to and publish is not None:
                    reply_properties = pika.BasicProperties(
                        correlation_id=properties.correlation_id
                    )
                    publish.basic_publish("", reply_to, body, reply_properties)
            finally:
                channel.basic_ack(delivery_tag)

        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                await self._in_thread(reply_and_ack)
        except (*PIKA_ERRORS, TransportError, TimeoutError) as exc:
            self.failed(f"{edge.name}: the reply or ack failed: {exc!r}")

    async def _send(
        self,
        channel: Any,
        exchange: str,
        key: str,
        env: Envelope,
        properties: Any,
        timeout_s: float,
    ) -> None:
        body = env.SerializeToString()
        try:
            async with asyncio.timeout(timeout_s):
                await self._in_thread(
                    lambda: channel.basic_publish(exchange, key, body, properties)
                )
        except TimeoutError:
            raise TransportError(
                f"RabbitMQ (pika) publish to {exchange or key}: no outcome in {timeout_s:g} s"
            ) from None
        except pika.exceptions.NackError:
            raise TransportError(f"RabbitMQ refused the message to {exchange or key}") from None
        except PIKA_ERRORS as exc:
            raise TransportError(f"RabbitMQ (pika) publish failed: {exc!r}") from exc

    def _delivery_mode(self, edge: Edge) -> int:
        return 2 if self.settings_for(edge).rabbitmq_durable else 1  # 2: persistent

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        if self._reply_channel is None:
            raise TransportError(f"{edge.name}: no RabbitMQ reply channel")
        correlation, future = self.calls.open()
        properties = pika.BasicProperties(
            correlation_id=correlation,
            reply_to=self._reply_to,
            delivery_mode=self._delivery_mode(edge),
        )
        timeout_s = self.settings_for(edge).request_timeout_s
        queue = queue_name(self.context.run_id, edge)
        try:
            await self._send(self._reply_channel, "", queue, env, properties, timeout_s)
        except TransportError:
            self.calls.discard(correlation)
            raise
        return await self.calls.wait(correlation, future, timeout_s, edge.name)

    async def publish(self, edge: Edge, env: Envelope) -> None:
        settings = self.settings_for(edge)
        channel = self._publish.get(settings.rabbitmq_confirms)
        if channel is None:
            raise TransportError(f"{edge.name}: no RabbitMQ (pika) channel to publish on")
        if edge.pattern == "publish-subscribe":
            exchange, key = exchange_name(self.context.run_id, edge), ""
        else:
            exchange, key = "", queue_name(self.context.run_id, edge)
        properties = pika.BasicProperties(delivery_mode=self._delivery_mode(edge))
        await self._send(channel, exchange, key, env, properties, settings.request_timeout_s)

    async def stop_serving(self) -> None:
        consumers, self._consumers = self._consumers, []
        if consumers and self._thread is not None and self._thread.is_alive():

            def cancel() -> None:
                for channel, tag in consumers:
                    channel.basic_cancel(tag)

            try:
                await self._in_thread(cancel)
            except (*PIKA_ERRORS, TransportError) as exc:
                log.warning("cancelling the pika consumers: %r", exc)
        await self._idle.wait()

    async def close(self) -> None:
        await self.stop_serving()
        self._stop.set()
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(*PIKA_ERRORS):  # wake it now, not at its next poll
                self._connection.add_callback_threadsafe(lambda: None)
            await asyncio.to_thread(thread.join)
            self._thread = None
