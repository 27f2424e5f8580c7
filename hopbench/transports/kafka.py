"""Kafka over aiokafka: publish-subscribe, fire-and-forget and request-reply.

Publish-subscribe: one topic per publishing service; each subscribing service reads
it in its own consumer group, so every subscriber gets every message and the
replicas of one subscriber share it. Fire-and-forget: a topic per edge, read by the
target's group. Request-reply: the request goes to the edge's topic with a
correlation id and the caller's reply topic in its headers; the callee produces the
reply there. Each calling process reads its own one-partition reply topic by direct
assignment (no group, so no rebalance wait).

A record that is not an envelope of this run (hopbench.transports.admission), on an
in-edge or a reply topic, is counted as rejected and produced, unchanged, to the
run's dead-letter topic with headers saying where it came from and why; the poller
goes on with the next record.

A publish returns once the broker acknowledged it (per ``kafka_acks``), so a failed
produce is an error, not a silent loss. ``send`` (the load worker's publish, and the
path ``publish`` takes too) returns once the record is in the producer's batch and
reports the acknowledgement, or its failure, through a callback on the record's future:
no task per message. Only a hand-off that has to wait (the partition's batch full, the
topic's metadata missing) goes on in a task of its own (hopbench.transports.eager). Both
are bounded by the edge's ``request_timeout_s`` from the hand-off
(hopbench.transports.deadlines). Consumers hand each record to a handler
task, at most ``prefetch`` at once, as RabbitMQ's prefetch does, so the two brokers
get the same consumer concurrency. A handler that never waits (``serve``'s
``at_once``: a service with no I/O and nothing to send on, on an edge without replies)
needs no task: every record of a fetch is handled in the poller's turn, one after the
other. A record has arrived when the consumer hands it over, decoded: a wait for one of
those slots is the service's wait, not transit.

A record's value is the envelope in its edge's encoding (a JSON reply says so in an
``hb-encoding`` header, since one reply topic takes the replies of every edge a
process calls on); compression is Kafka's own, per record batch (the producer's
``compression_type``). The bytes on the wire are the record batches the producer
wrote, after compression, counted as the sender takes them from the accumulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from hopbench import clock
from hopbench.config.runspec import RunSpec
from hopbench.config.settings import Settings
from hopbench.config.topology import LOADGEN, Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports import codec, eager
from hopbench.transports.base import Decoder, Handler, Settled, Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.deadlines import Deadlines
from hopbench.transports.plan import Provisioning
from hopbench.transports.replies import PendingReplies

log = logging.getLogger(__name__)
ASSIGNMENT_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0  # a client whose broker is gone stops in retries: give up on it
FETCH_WAIT_MS = 500  # how long one fetch waits for records when none are buffered
CORRELATION = "hb-correlation"
REPLY_TO = "hb-reply-to"
ENCODING = "hb-encoding"
ProducerKey = tuple[int, int, int, str]  # acks, linger, batch bytes, compression
# on a dead-lettered record: why it was rejected, where it was read, and by whom
REJECTED = "hb-rejected"
READ_FROM = "hb-read-from"
READ_BY = "hb-read-by"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one out-edge's records go, worked out once per edge, not per message."""

    edge: str
    producer: AIOKafkaProducer
    topic: str
    encoding: str
    timeout_s: float


def topic_name(run_id: str, edge: Edge) -> str:
    """Publish-subscribe: one topic per publishing service, a group per subscriber.
    Fire-and-forget and request-reply: one topic per edge, read by the target's group."""
    if edge.pattern == "publish-subscribe":
        return f"hb-{run_id}-{edge.source}"
    return f"hb-{run_id}-{edge.source}-{edge.target}"


def group_name(run_id: str, edge: Edge) -> str:
    return f"hb-{run_id}-{edge.target}"


def reply_topic(run_id: str, service: str, replica: int) -> str:
    """Where one process's request-reply calls over Kafka get their replies."""
    return f"hb-{run_id}-reply-{service}-{replica}"


def dead_letter_topic(run_id: str) -> str:
    """Where the run's rejected records go (one partition), deleted with the run."""
    return f"hb-{run_id}-dead-letters"


def plan(spec: RunSpec) -> Provisioning:
    """Topic -> partitions: an edge's kafka_partitions, else enough for the largest
    subscriber group to share it; plus a one-partition reply topic for every
    process that calls over Kafka (each replica, or each load worker), and the run's
    dead-letter topic."""
    topology = spec.resolved
    partitions: dict[str, int] = {dead_letter_topic(spec.run_id): 1}
    for edge in topology.edges:
        if edge.mode != "kafka":
            continue
        name = topic_name(spec.run_id, edge)
        wanted = spec.for_edge(edge).kafka_partitions or topology.services[edge.target].replicas
        partitions[name] = max(partitions.get(name, 1), wanted)
        if edge.is_sync:
            callers = (
                spec.load.workers
                if edge.source == LOADGEN
                else topology.services[edge.source].replicas
            )
            for replica in range(callers):
                partitions[reply_topic(spec.run_id, edge.source, replica)] = 1
    return Provisioning(kafka_topics=partitions)


class KafkaTransport(Transport):
    mode = "kafka"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        bootstrap = context.kafka_bootstrap
        if bootstrap is None:
            raise TransportError("a kafka edge needs a broker, and the run has none")
        self.bootstrap = bootstrap
        # one producer per distinct (acks, linger, batch, compression) among its edges
        self._producers: dict[ProducerKey, AIOKafkaProducer] = {}
        # topic -> (edge name, reply?): whose bytes a drained record batch are
        self._topic_edges: dict[str, tuple[str, bool]] = {}
        self._consumers: list[AIOKafkaConsumer] = []
        self._pollers: list[asyncio.Task[None]] = []
        self._handling: set[asyncio.Task[Any]] = set()
        self._client_id = f"{context.service}-{context.replica}"
        self._reply_to = reply_topic(context.run_id, context.service, context.replica)
        self.calls = PendingReplies(self._client_id)
        self.replies = self.calls
        self._routes: dict[int, Route] = {}  # by out-edge index
        self._deadlines = Deadlines()  # of the records sent and not yet acknowledged
        self._handing: set[asyncio.Task[Any]] = set()  # hand-offs that had to wait

    def _calls(self) -> bool:
        outs = self.context.topology.out_edges(self.context.service)
        return any(e.mode == self.mode and e.is_sync for e in outs)

    async def start(self) -> None:
        for edge in self.context.topology.out_edges(self.context.service):
            if edge.mode == self.mode:
                await self._producer_for(self.settings_for(edge))
        for edge, _ in self.handlers.values():
            if edge.is_sync:  # replies go out on the run's settings, compressed as the edge
                await self._producer_for(self._reply_settings(edge))
        if self._calls():
            reply_consumer = self._consumer(None, self.settings)
            await self._connect(reply_consumer, self._reply_to)
            reply_consumer.assign([TopicPartition(self._reply_to, 0)])
            self._pollers.append(asyncio.create_task(self._poll_replies(reply_consumer)))
        for edge, handler in self.handlers.values():
            run_id = self.context.run_id
            consumer = self._consumer(group_name(run_id, edge), self.settings_for(edge))
            consumer.subscribe([topic_name(run_id, edge)])
            await self._connect(consumer, edge.name)
            await self._await_assignment(consumer, edge)
            self._pollers.append(asyncio.create_task(self._poll(consumer, edge, handler)))

    def _consumer(self, group: str | None, settings: Settings) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=group,
            client_id=self._client_id,
            auto_offset_reset="earliest",  # topics are new per run: nothing is skipped
            # the sampler's lag counts from the committed offset: keep it within 200 ms
            # of what the consumer took (default 5 s). Committing 20 times a second
            # instead of every 5 s cost no measurable CPU (chain, Tansu, 500/s)
            auto_commit_interval_ms=200,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            # join in ~3 s, not 5-8 s: this broker waits out the rebalance timeout
            session_timeout_ms=6000,
            rebalance_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )

    async def _connect(self, consumer: AIOKafkaConsumer, what: str) -> None:
        self._consumers.append(consumer)  # stopped by stop_serving, whatever happens next
        try:
            await consumer.start()
        except KafkaError as exc:
            raise TransportError(f"{what}: Kafka consumer: {exc}") from exc

    async def _await_assignment(self, consumer: AIOKafkaConsumer, edge: Edge) -> None:
        deadline = asyncio.get_running_loop().time() + ASSIGNMENT_TIMEOUT_S
        while not consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise TransportError(
                    f"{edge.name}: no partition assigned after {ASSIGNMENT_TIMEOUT_S} s"
                )
            await asyncio.sleep(0.05)

    async def _poll(self, consumer: AIOKafkaConsumer, edge: Edge, handler: Handler) -> None:
        slots = asyncio.Semaphore(self.settings_for(edge).prefetch)
        encoding = self.settings_for(edge).encoding  # Kafka's consumer decompresses

        def decode(body: bytes) -> Envelope:
            return codec.decode(body, encoding)

        if edge.index in self.at_once:
            await self._poll_at_once(consumer, edge, handler, slots, decode)
            return
        async for record in consumer:
            env = await self.receive(record.value, _where(edge.name, record), decode)
            if env is None:
                continue
            arrived_ns = clock.now_ns()
            await slots.acquire()
            task = asyncio.create_task(self._handle(env, arrived_ns, record.headers, edge, handler))
            self._handling_in(task, slots)

    async def _poll_at_once(
        self,
        consumer: AIOKafkaConsumer,
        edge: Edge,
        handler: Handler,
        slots: asyncio.Semaphore,
        decode: Decoder,
    ) -> None:
        """A handler that never waits: every record of a fetch handled in this turn, no
        task each (one that waits after all goes on in a task, holding a slot)."""
        while True:
            fetched = await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
            for records in fetched.values():
                for record in records:
                    where = _where(edge.name, record)
                    env = self.admit(record.value, where, decode)
                    if not isinstance(env, Envelope):
                        await self.reject(record.value, where, env)
                        continue
                    arrived_ns = clock.now_ns()
                    if slots.locked():  # handlers that waited hold every slot
                        await slots.acquire()
                        slots.release()
                    try:  # no reply to send: the handler alone, no wrapper around it
                        handed = eager.start(handler(edge, env, arrived_ns))
                    except Exception:  # a bug in a handler: never kill the poller
                        log.exception("%s: handler failed", edge.name)
                        continue
                    if not isinstance(handed, eager.Done):
                        await slots.acquire()  # free: nothing ran since the check
                        self._handling_in(handed, slots, edge)

    def _handling_in(
        self, task: asyncio.Task[Any], slots: asyncio.Semaphore, edge: Edge | None = None
    ) -> None:
        """A handler's task, holding one of its edge's slots until it is done (edge:
        log what it raised; else the task catches its own)."""
        self._handling.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._handling.discard(task)
            slots.release()
            if edge is not None and not task.cancelled() and task.exception() is not None:
                log.error("%s: handler failed", edge.name, exc_info=task.exception())

        task.add_done_callback(done)

    async def _handle(
        self, env: Envelope, arrived_ns: int, headers: Any, edge: Edge, handler: Handler
    ) -> None:
        try:
            reply = await handler(edge, env, arrived_ns)
        except TransportError:
            reply = None  # the runtime counted and logged it; the caller times out
        except Exception:  # a bug in a handler: never kill the poller
            log.exception("%s: handler failed", edge.name)
            reply = None
        if not edge.is_sync or reply is None:
            return
        try:
            meta = dict(headers or ())
            if REPLY_TO in meta:
                settings = self._reply_settings(edge)
                producer = await self._producer_for(settings)
                topic = bytes(meta[REPLY_TO]).decode(errors="replace")
                value = codec.encode(reply, settings.encoding)
                reply_headers = [(CORRELATION, meta.get(CORRELATION, b""))]
                if settings.encoding != "protobuf":
                    reply_headers.append((ENCODING, settings.encoding.encode()))
                self._topic_edges[topic] = (edge.name, True)
                self.wire.sent(edge.name, len(value), None, reply=True)
                async with asyncio.timeout(self.settings.request_timeout_s):  # broker gone
                    ack = await producer.send(topic, value, headers=reply_headers)
                    await ack
        except KafkaError as exc:
            self.failed(f"{edge.name}: the reply could not be produced: {_kafka_error(exc)}")
        except TimeoutError:
            self.failed(f"{edge.name}: the reply was not acknowledged (is the broker up?)")

    async def _poll_replies(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            meta = dict(record.headers or ())
            encoding = bytes(meta.get(ENCODING, b"protobuf")).decode(errors="replace")
            decode = functools.partial(codec.decode, encoding=encoding)
            reply = await self.receive(record.value, _where("replies", record), decode)
            if reply is not None:
                correlation = meta.get(CORRELATION, b"")
                self.calls.resolve(bytes(correlation).decode(errors="replace"), reply)

    async def dead_letter(self, body: bytes, where: str, why: str) -> None:
        """Produce a rejected record, unchanged, to the run's dead-letter topic."""
        producer = await self._producer_for(self.settings)
        headers = [
            (REJECTED, why.encode()),
            (READ_FROM, where.encode()),
            (READ_BY, self._client_id.encode()),
        ]
        ack = await producer.send(dead_letter_topic(self.context.run_id), body, headers=headers)
        await ack

    def _reply_settings(self, edge: Edge) -> Settings:
        """Replies: the run's producer settings, the edge's encoding and compression."""
        own = self.settings_for(edge)
        return self.settings.with_overrides(
            [("encoding", own.encoding), ("compression", own.compression)]
        )

    def _key(self, settings: Settings) -> ProducerKey:
        return (settings.kafka_acks, settings.kafka_linger_ms, settings.kafka_batch_bytes,
                settings.compression)  # fmt: skip

    async def _producer_for(self, settings: Settings) -> AIOKafkaProducer:
        key = self._key(settings)
        producer = self._producers.get(key)
        if producer is not None:
            return producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all" if settings.kafka_acks < 0 else settings.kafka_acks,
            linger_ms=settings.kafka_linger_ms,
            max_batch_size=settings.kafka_batch_bytes,
            enable_idempotence=False,
            compression_type=None if settings.compression == "none" else settings.compression,
        )
        self._count_batches(producer)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise TransportError(
                f"Kafka producer could not connect to {self.bootstrap}: {exc}"
            ) from exc
        self._producers[key] = producer
        return producer

    def _count_batches(self, producer: AIOKafkaProducer) -> None:
        """Count each record batch the producer's sender takes, as it takes it: its
        bytes after compression (batch header and record framing included). aiokafka
        has no public hook for this; without the private one, bytes stay uncounted."""
        accumulator = getattr(producer, "_message_accumulator", None)
        drain = getattr(accumulator, "drain_by_nodes", None)
        if drain is None:
            log.warning("this aiokafka has no drain_by_nodes: Kafka wire bytes not counted")
            return

        def drain_counted(*args: Any, **kwargs: Any) -> Any:
            batches, unknown_leaders = drain(*args, **kwargs)
            for node_batches in batches.values():
                for tp, batch in node_batches.items():
                    owner = self._topic_edges.get(tp.topic)
                    if owner is not None:
                        size = len(batch.get_data_buffer())
                        self.wire.written(owner[0], batch.record_count, size, reply=owner[1])
            return batches, unknown_leaders

        accumulator.drain_by_nodes = drain_counted  # type: ignore[union-attr]

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        correlation, future = self.calls.open()
        headers = [(CORRELATION, correlation.encode()), (REPLY_TO, self._reply_to.encode())]
        try:
            await self._produce(edge, env, headers)
        except TransportError:
            self.calls.discard(correlation)
            raise
        return await self.calls.wait(
            correlation, future, self.settings_for(edge).request_timeout_s, edge.name
        )

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self.publish_by_send(edge, env)

    async def send(self, edge: Edge, env: Envelope, settled: Settled) -> None:
        try:
            route = self._routes.get(edge.index) or self._route(edge)
        except TransportError as exc:
            settled(str(exc))
            return
        value = codec.encode(env, route.encoding)
        self.wire.sent(route.edge, len(value), None)
        started = asyncio.get_running_loop().time()
        try:
            handed = eager.start(route.producer.send(route.topic, value))
        except KafkaError as exc:
            settled(f"{route.edge}: Kafka produce failed: {_kafka_error(exc)}")
            return
        if isinstance(handed, eager.Done):
            self._await_ack(handed.value, route, started, settled)
            return
        # the hand-off waits (a full batch, missing metadata): the rest in its task
        self._handing.add(handed)
        self._deadlines.watch(handed, route.timeout_s, started)
        handed.add_done_callback(functools.partial(self._handed, route, started, settled))

    def _route(self, edge: Edge) -> Route:
        settings = self.settings_for(edge)
        producer = self._producers.get(self._key(settings))
        if producer is None:
            raise TransportError(f"{edge.name}: the Kafka producer is not started")
        topic = topic_name(self.context.run_id, edge)
        self._topic_edges[topic] = (edge.name, False)
        route = Route(edge.name, producer, topic, settings.encoding, settings.request_timeout_s)
        self._routes[edge.index] = route
        return route

    def _handed(
        self, route: Route, started: float, settled: Settled, handed: asyncio.Task[Any]
    ) -> None:
        self._handing.discard(handed)
        if handed.cancelled():
            settled(self._unacknowledged(route))
        elif (exc := handed.exception()) is not None:
            settled(f"{route.edge}: Kafka produce failed: {_any_error(exc)}")
        else:
            self._await_ack(handed.result(), route, started, settled)

    def _await_ack(
        self, ack: asyncio.Future[Any], route: Route, started: float, settled: Settled
    ) -> None:
        self._deadlines.watch(ack, route.timeout_s, started)
        ack.add_done_callback(functools.partial(self._acked, route, settled))

    def _acked(self, route: Route, settled: Settled, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled():
            settled(self._unacknowledged(route))
        elif (exc := ack.exception()) is not None:
            settled(f"{route.edge}: Kafka produce failed: {_any_error(exc)}")
        else:
            settled(None)

    def _unacknowledged(self, route: Route) -> str:
        return (
            f"{route.edge}: Kafka produce not acknowledged within {route.timeout_s:g} s "
            f"(is the broker at {self.bootstrap} up?)"
        )

    async def _produce(
        self, edge: Edge, env: Envelope, headers: list[tuple[str, bytes]] | None
    ) -> None:
        settings = self.settings_for(edge)
        producer = self._producers.get(self._key(settings))
        if producer is None:
            raise TransportError(f"{edge.name}: the Kafka producer is not started")
        topic = topic_name(self.context.run_id, edge)
        value = codec.encode(env, settings.encoding)
        self._topic_edges[topic] = (edge.name, False)
        self.wire.sent(edge.name, len(value), None)
        # bounded by the edge's request timeout: with its broker gone, aiokafka waits
        # for metadata for up to 40 s, and the run must end on time
        timeout_s = settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                ack = await producer.send(topic, value, headers=headers)
                await ack
        except KafkaError as exc:
            raise TransportError(f"{edge.name}: Kafka produce failed: {_kafka_error(exc)}") from exc
        except TimeoutError:
            raise TransportError(
                f"{edge.name}: Kafka produce not acknowledged within {timeout_s:g} s "
                f"(is the broker at {self.bootstrap} up?)"
            ) from None

    async def stop_serving(self) -> None:
        for poller in self._pollers:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        self._pollers.clear()
        if self._handling:
            await asyncio.gather(*list(self._handling), return_exceptions=True)
        for consumer in self._consumers:
            await _stop(consumer, "consumer")
        self._consumers.clear()

    async def close(self) -> None:
        await self.stop_serving()
        for producer in self._producers.values():
            await _stop(producer, "producer")
        self._producers.clear()
        self._routes.clear()
        self._deadlines.close()


async def _stop(client: AIOKafkaConsumer | AIOKafkaProducer, what: str) -> None:
    """Stop a client within STOP_TIMEOUT_S: one whose broker died retries for ever."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await client.stop()
    except asyncio.CancelledError:
        # aiokafka's fetcher lets the cancellation of its own retry task out of stop()
        # when the broker is gone; only a cancellation of ours goes on
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("Kafka %s stopped with its broker gone", what)
    except TimeoutError:
        log.warning("Kafka %s did not stop within %g s (broker gone?)", what, STOP_TIMEOUT_S)
    except KafkaError as exc:
        log.warning("Kafka %s stop failed: %s", what, _kafka_error(exc))


def _where(what: str, record: Any) -> str:
    """What a record was read as, and its place: topic, partition and offset."""
    return f"{what} ({record.topic}[{record.partition}]@{record.offset})"


def _any_error(exc: BaseException) -> str:
    return _kafka_error(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}"


def _kafka_error(exc: KafkaError) -> str:
    """aiokafka's error in words: its class names the broker's error code (e.g.
    MessageSizeTooLargeError), its text says why."""
    text = str(exc)
    name = type(exc).__name__
    return text if name in text else f"{name}: {text}"
