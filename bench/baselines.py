"""One-hop baselines: each client library used directly, with no hopbench code in the path.

bench/ compares hopbench's own one-hop figures (latency at a fixed rate, and maximum
rate) against these, as ratios, so that the cost hopbench adds on top of the raw
client is visible. The setup mirrors hopbench's: the server (HTTP, gRPC) or the
consumer (Kafka, RabbitMQ) runs in a separate process, started with the "spawn"
context and running on uvloop; the client or publisher runs in the calling process,
on the caller's event loop (uvloop in bench/).

* ``http``: FastAPI on uvicorn (uvloop, httptools), one POST route echoing the body;
  one aiohttp ``ClientSession`` with ``TCPConnector(limit_per_host=32)``.
* ``grpc``: a grpc.aio server with a generic unary handler echoing raw bytes (no
  generated code); one grpc.aio insecure channel.
* ``kafka``: aiokafka against a fresh embedded Tansu broker, one topic with one
  partition; producer acks=1, linger_ms=0, no idempotence.
* ``rabbitmq``: aiormq against the server at ``RABBITMQ_URL``, the default exchange
  and a fresh queue; no publisher confirms; the consumer has prefetch 100 and acks
  each message.

``latency()`` is open loop: message i is due at t0 + i/rate and is sent then, whatever
happened to earlier messages; latency = completion time - *intended* send time
(``time.monotonic_ns()``, one clock for every process on a Linux host), so a stall is
charged to every message it delays. Completion is the reply's arrival at the client
(HTTP, gRPC) or the message's arrival at the consumer (Kafka, RabbitMQ; the intended
time travels in the first 8 bytes of the payload and the consumer sends back an
HdrHistogram). Messages due during the warm-up are not measured.

``max_rate()``: for HTTP and gRPC, 32 requests kept in flight for 1 s of warm-up and
then ``duration_s`` measured seconds; completed / duration_s. For Kafka and RabbitMQ,
publish as fast as possible for ``duration_s``; the consumer's received count per
second from its first message to its last.

Run it directly to print every mode's figures (about a minute)::

    .venv/bin/python bench/baselines.py [MODE ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import grpc
import uvicorn
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiormq.abc import DeliveredMessage
from fastapi import FastAPI, Request, Response
from hdrh.histogram import HdrHistogram

from hopbench.brokers.tansu import TansuBroker
from hopbench.loadgen.ticker import Ticker

MODES = ("http", "grpc", "kafka", "rabbitmq")
SYNC_MODES = ("http", "grpc")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
HOST = "127.0.0.1"

HTTP_CONNECTIONS = 32  # aiohttp limit_per_host
CONCURRENCY = 32  # requests in flight in max_rate() for http and grpc
SYNC_WARMUP_S = 1.0  # unmeasured closed-loop warm-up in max_rate()
RABBITMQ_PREFETCH = 100
KAFKA_ACK_BATCH = 1000  # max_rate(): acks awaited per batch, at most two batches pending
GRPC_SERVICE = "hopbench.baseline.Echo"
GRPC_METHOD = f"/{GRPC_SERVICE}/Call"

START_DELAY_NS = 10_000_000  # the schedule starts 10 ms after setup
READY_TIMEOUT_S = 30.0  # child process start (imports, Kafka group join)
REQUEST_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0  # how long the consumer waits for stragglers after the last send
STOP_TIMEOUT_S = 5.0  # each cleanup step
SETUP_TIMEOUT_S = 20.0  # broker connections, queue and topic creation

# Kafka/RabbitMQ payload: intended send time (monotonic ns) | 1 if measured | zero padding
HEADER = struct.Struct("<qB")


@dataclass(frozen=True)
class Latency:
    p50_us: float
    p99_us: float
    count: int


def _new_histogram() -> Any:
    return HdrHistogram(1, 3_600_000_000, 3)


def _check(mode: str, payload_bytes: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if mode not in SYNC_MODES and payload_bytes < HEADER.size:
        raise ValueError(f"{mode} payloads carry a {HEADER.size}-byte header: {payload_bytes=}")


def _body(payload_bytes: int, intended_ns: int = 0, measured: bool = False) -> bytes:
    return HEADER.pack(intended_ns, measured) + bytes(payload_bytes - HEADER.size)


# --------------------------------------------------------------------------- pipes


async def _readable(fd: int, timeout_s: float) -> None:
    """Wait until `fd` is readable (data, EOF or a process sentinel); TimeoutError if not."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(readable, timeout_s)
    finally:
        loop.remove_reader(fd)


async def _recv(conn: Connection, timeout_s: float) -> tuple[Any, ...]:
    """The next message on a multiprocessing pipe, without blocking the event loop.

    Raises TimeoutError, or EOFError when the other process has gone.
    """
    if not conn.poll():
        await _readable(conn.fileno(), timeout_s)
    message = conn.recv()
    assert isinstance(message, tuple)
    return message


def _send(conn: Connection, *message: Any) -> None:
    with contextlib.suppress(OSError):  # the other end has gone: its own cleanup applies
        conn.send(message)


# --------------------------------------------------------------------------- child side


def _child_main(conn: Connection, mode: str, target: tuple[str, str], lifetime_s: float) -> None:
    """Entry point of the server/consumer process."""
    mains: dict[str, Callable[[Connection, tuple[str, str]], Awaitable[None]]] = {
        "http": _serve_http,
        "grpc": _serve_grpc,
        "kafka": _consume_kafka,
        "rabbitmq": _consume_rabbitmq,
    }

    async def main() -> None:
        async with asyncio.timeout(lifetime_s):
            await mains[mode](conn, target)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except Exception as exc:
        _send(conn, "error", f"{mode} {'server' if mode in SYNC_MODES else 'consumer'}: "
              f"{type(exc).__name__}: {exc}")  # fmt: skip
    finally:
        conn.close()


async def _until_stopped(conn: Connection) -> None:
    """Wait for "stop" from the parent, or for the parent to go away."""
    with contextlib.suppress(EOFError, OSError):
        while (await _recv(conn, math.inf))[0] != "stop":
            pass


async def _serve_http(conn: Connection, _target: tuple[str, str]) -> None:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while not server.started:
                    if serving.done():
                        await serving  # raises what stopped it
                        raise RuntimeError("uvicorn exited before it started")
                    await asyncio.sleep(0.01)
            _send(conn, "ready", sock.getsockname()[1])
            await _until_stopped(conn)
        finally:
            server.should_exit = True
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await serving


def _identity(data: bytes) -> bytes:
    return data


async def _serve_grpc(conn: Connection, _target: tuple[str, str]) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=_identity, response_serializer=_identity
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Call": handler}),)
    )
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        _send(conn, "ready", port)
        await _until_stopped(conn)
    finally:
        await server.stop(grace=1)


class _Recorder:
    """Consumer-side bookkeeping: latency of measured messages, count, first and last."""

    def __init__(self) -> None:
        self.hist = _new_histogram()
        self.received = 0
        self.first_ns = 0
        self.last_ns = 0
        self.expected: int | None = None
        self.all_seen = asyncio.Event()

    def on_body(self, body: bytes) -> None:
        now_ns = time.monotonic_ns()
        intended_ns, measured = HEADER.unpack_from(body)
        if self.received == 0:
            self.first_ns = now_ns
        self.last_ns = now_ns
        self.received += 1
        if measured:
            self.hist.record_value(max(1, (now_ns - intended_ns) // 1000))
        if self.expected is not None and self.received >= self.expected:
            self.all_seen.set()

    async def report(self, conn: Connection) -> None:
        """Say "ready", wait for ("end", sent, drain_s), wait for the messages, reply."""
        _send(conn, "ready", 0)
        try:
            message = await _recv(conn, math.inf)
        except (EOFError, OSError):
            return
        if message[0] != "end":
            return
        _, sent, drain_s = message
        self.expected = sent
        if self.received >= sent:
            self.all_seen.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_seen.wait(), drain_s)
        _send(conn, "result", self.hist.encode(), self.received, self.first_ns, self.last_ns)


async def _consume_kafka(conn: Connection, target: tuple[str, str]) -> None:
    bootstrap, topic = target
    recorder = _Recorder()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.consumer",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,  # Tansu waits out the fetch wait even with data ready
        session_timeout_ms=6000,
        rebalance_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    try:
        await consumer.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partition of {topic} assigned in {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.05)

        async def poll() -> None:
            async for record in consumer:
                recorder.on_body(record.value)

        polling = asyncio.create_task(poll())
        try:
            await recorder.report(conn)
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
    finally:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await consumer.stop()


async def _consume_rabbitmq(conn: Connection, target: tuple[str, str]) -> None:
    url, queue = target
    recorder = _Recorder()
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=RABBITMQ_PREFETCH)

        async def on_message(message: DeliveredMessage) -> None:
            recorder.on_body(message.body)
            assert message.delivery_tag is not None
            await channel.basic_ack(message.delivery_tag)

        await channel.basic_consume(queue, on_message, no_ack=False)
        await recorder.report(conn)
    finally:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await connection.close()


# --------------------------------------------------------------------------- parent side


async def _reap(proc: BaseProcess) -> None:
    """Wait for the child to exit; SIGTERM, then SIGKILL it if it lingers."""
    for signal_it in (None, proc.terminate, proc.kill):
        if proc.exitcode is not None:
            break
        if signal_it is not None:
            signal_it()
        with contextlib.suppress(TimeoutError):
            await _readable(proc.sentinel, STOP_TIMEOUT_S)  # readable once it has exited
    proc.join(STOP_TIMEOUT_S)  # it has exited: this only reaps it


async def _expect(conn: Connection, kind: str, timeout_s: float, mode: str) -> tuple[Any, ...]:
    try:
        message = await _recv(conn, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"{mode}: no {kind!r} from the child within {timeout_s} s") from None
    except (EOFError, OSError) as exc:
        raise RuntimeError(f"{mode}: the child process exited before {kind!r}") from exc
    if message[0] == "error":
        raise RuntimeError(message[1])
    if message[0] != kind:
        raise RuntimeError(f"{mode}: expected {kind!r} from the child, got {message[0]!r}")
    return message


@contextlib.asynccontextmanager
async def _child(
    mode: str, lifetime_s: float, target: tuple[str, str] = ("", "")
) -> AsyncIterator[tuple[Connection, int]]:
    """Start the server/consumer process; yield (pipe, port) once it is ready."""
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(
        target=_child_main,
        args=(child_conn, mode, target, lifetime_s),
        name=f"baseline-{mode}",
        daemon=True,  # a safety net: multiprocessing terminates it at interpreter exit
    )
    try:
        proc.start()
        child_conn.close()  # the child's end: we see EOF when the child exits
        ready = await _expect(conn, "ready", READY_TIMEOUT_S, mode)
        yield conn, int(ready[1])
    finally:
        child_conn.close()
        _send(conn, "stop")
        if proc.pid is not None:
            await _reap(proc)
        conn.close()


@contextlib.asynccontextmanager
async def _requester(
    mode: str, lifetime_s: float
) -> AsyncIterator[Callable[[bytes], Awaitable[None]]]:
    """Server process plus client; yields one request-reply call."""
    async with _child(mode, lifetime_s) as (_, port):
        if mode == "http":
            connector = aiohttp.TCPConnector(limit_per_host=HTTP_CONNECTIONS)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                url = f"http://{HOST}:{port}/echo"

                async def http_call(body: bytes) -> None:
                    async with session.post(url, data=body) as response:
                        reply = await response.read()
                    if response.status != 200 or len(reply) != len(body):
                        raise RuntimeError(f"http: status {response.status}, {len(reply)} bytes")

                yield http_call
        else:
            async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
                stub = channel.unary_unary(
                    GRPC_METHOD, request_serializer=_identity, response_deserializer=_identity
                )

                async def grpc_call(body: bytes) -> None:
                    reply = await stub(body, timeout=REQUEST_TIMEOUT_S)
                    if len(reply) != len(body):
                        raise RuntimeError(f"grpc: {len(reply)} bytes back, sent {len(body)}")

                yield grpc_call


@dataclass
class _Publisher:
    conn: Connection  # to the consumer process
    publish: Callable[[bytes], Awaitable[Any]]  # kafka: returns the ack future; rabbitmq: None


@contextlib.asynccontextmanager
async def _publisher(mode: str, lifetime_s: float) -> AsyncIterator[_Publisher]:
    """Broker resources, consumer process and publisher, torn down in reverse."""
    name = f"hopbench-baseline-{uuid.uuid4().hex[:12]}"
    if mode == "kafka":
        with tempfile.TemporaryDirectory(prefix="hopbench-baseline-") as tmp:
            broker = TansuBroker(Path(tmp) / "tansu.log")
            try:
                async with asyncio.timeout(SETUP_TIMEOUT_S):
                    await broker.start()
                    await broker.create_topics({name: 1})  # gone with the broker (memory only)
                async with _child(mode, lifetime_s, (broker.bootstrap, name)) as (conn, _):
                    producer = AIOKafkaProducer(
                        bootstrap_servers=broker.bootstrap,
                        acks=1,
                        linger_ms=0,
                        enable_idempotence=False,
                    )
                    try:
                        async with asyncio.timeout(SETUP_TIMEOUT_S):
                            await producer.start()
                            await producer.partitions_for(name)

                        async def kafka_send(body: bytes) -> Any:
                            return await producer.send(name, body)

                        yield _Publisher(conn, kafka_send)
                    finally:
                        async with asyncio.timeout(STOP_TIMEOUT_S):
                            await producer.stop()
            finally:
                await broker.stop()
    else:
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            connection = await aiormq.connect(RABBITMQ_URL)
        try:
            declared = False
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                channel = await connection.channel(publisher_confirms=False)
                # x-expires: the server drops it 60 s after it was last used, should we die
                await channel.queue_declare(name, arguments={"x-expires": 60_000})
                declared = True
            async with _child(mode, lifetime_s, (RABBITMQ_URL, name)) as (conn, _):

                async def rabbitmq_send(body: bytes) -> None:
                    await channel.basic_publish(body, routing_key=name)

                yield _Publisher(conn, rabbitmq_send)
        finally:
            try:
                if declared:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        cleanup = await connection.channel()
                        await cleanup.queue_delete(name)
            finally:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await connection.close()


async def _consumer_result(
    pub: _Publisher, mode: str, sent: int, drain_s: float
) -> tuple[Any, int, int, int]:
    """(histogram, received, first_ns, last_ns) from the consumer process."""
    pub.conn.send(("end", sent, drain_s))
    _, encoded, received, first_ns, last_ns = await _expect(
        pub.conn, "result", drain_s + STOP_TIMEOUT_S, mode
    )
    hist = _new_histogram()
    hist.decode_and_add(encoded)
    return hist, received, first_ns, last_ns


def _schedule(rate: float, duration_s: float, warmup_s: float) -> Iterator[tuple[int, bool]]:
    """(intended send time in monotonic ns, measured?) for each message, in order."""
    t0 = time.monotonic_ns() + START_DELAY_NS
    warmup_ns = warmup_s * 1e9
    for i in range(round(rate * (warmup_s + duration_s))):
        offset_ns = round(i * 1e9 / rate)
        yield t0 + offset_ns, offset_ns >= warmup_ns


_TICKERS: dict[asyncio.AbstractEventLoop, Ticker] = {}


async def _sleep_until(when_ns: int) -> None:
    """Pace as hopbench does (a thread sleeping precisely, not the loop's 1 ms timers),
    so that the latency ratio compares the transports, not the pacing."""
    if when_ns - time.monotonic_ns() <= 20_000:
        return
    loop = asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = Ticker()
    await ticker.until(when_ns)


def _latency(hist: Any) -> Latency:
    return Latency(
        p50_us=float(hist.get_value_at_percentile(50)),
        p99_us=float(hist.get_value_at_percentile(99)),
        count=int(hist.get_total_count()),
    )


async def latency(
    mode: str, rate: float, duration_s: float, warmup_s: float, payload_bytes: int
) -> Latency:
    """Open-loop one-hop latency at `rate` messages/s; see the module docstring."""
    _check(mode, payload_bytes)
    run_s = warmup_s + duration_s
    lifetime_s = READY_TIMEOUT_S + run_s + REQUEST_TIMEOUT_S + DRAIN_TIMEOUT_S + 30
    if mode in SYNC_MODES:
        hist = _new_histogram()
        body = bytes(payload_bytes)
        async with _requester(mode, lifetime_s) as call:

            async def one(intended_ns: int, measured: bool) -> None:
                await call(body)
                if measured:
                    hist.record_value(max(1, (time.monotonic_ns() - intended_ns) // 1000))

            async with asyncio.timeout(run_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
                for intended_ns, measured in _schedule(rate, duration_s, warmup_s):
                    await _sleep_until(intended_ns)
                    tg.create_task(one(intended_ns, measured))
                    await asyncio.sleep(0)  # let replies in even when behind schedule
        return _latency(hist)

    async with _publisher(mode, lifetime_s) as pub:
        sent = 0
        async with asyncio.timeout(run_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
            for intended_ns, measured in _schedule(rate, duration_s, warmup_s):
                await _sleep_until(intended_ns)
                ack = await pub.publish(_body(payload_bytes, intended_ns, measured))
                if ack is not None:  # kafka: the ack is awaited off the send path
                    tg.create_task(_await(ack))
                sent += 1
        hist, received, _, _ = await _consumer_result(pub, mode, sent, DRAIN_TIMEOUT_S)
    if received != sent:
        raise RuntimeError(f"{mode}: the consumer received {received} of {sent} messages")
    return _latency(hist)


async def _await(future: Awaitable[Any]) -> None:
    await future


async def max_rate(mode: str, duration_s: float, payload_bytes: int) -> float:
    """Maximum one-hop rate in messages/s; see the module docstring."""
    _check(mode, payload_bytes)
    lifetime_s = READY_TIMEOUT_S + SYNC_WARMUP_S + duration_s + 2 * DRAIN_TIMEOUT_S + 30
    if mode in SYNC_MODES:
        body = bytes(payload_bytes)
        completed = 0
        async with _requester(mode, lifetime_s) as call:
            measure_from = time.monotonic() + SYNC_WARMUP_S
            end = measure_from + duration_s

            async def worker() -> None:
                nonlocal completed
                while time.monotonic() < end:
                    await call(body)
                    if measure_from <= time.monotonic() <= end:
                        completed += 1

            async with asyncio.timeout(SYNC_WARMUP_S + duration_s + REQUEST_TIMEOUT_S + 5):
                async with asyncio.TaskGroup() as tg:
                    for _ in range(CONCURRENCY):
                        tg.create_task(worker())
        return completed / duration_s

    body = _body(payload_bytes)
    async with _publisher(mode, lifetime_s) as pub:
        sent = 0
        async with asyncio.timeout(duration_s + REQUEST_TIMEOUT_S + 5):
            end = time.monotonic() + duration_s
            if mode == "kafka":
                previous: list[Any] = []
                batch: list[Any] = []
                while time.monotonic() < end:
                    batch.append(await pub.publish(body))
                    sent += 1
                    if len(batch) >= KAFKA_ACK_BATCH:
                        await asyncio.gather(*previous)  # keeps one batch in flight meanwhile
                        previous, batch = batch, []
                await asyncio.gather(*previous, *batch)
            else:
                while time.monotonic() < end:
                    await pub.publish(body)
                    sent += 1
        # the consumer may lag: its rate is over the messages it got by the drain deadline
        _, received, first_ns, last_ns = await _consumer_result(
            pub, mode, sent, max(DRAIN_TIMEOUT_S, duration_s)
        )
    if received < 2 or last_ns <= first_ns:
        raise RuntimeError(f"{mode}: the consumer received {received} of {sent} messages")
    return (received - 1) / ((last_ns - first_ns) / 1e9)  # intervals between first and last


# --------------------------------------------------------------------------- __main__


async def _report(modes: list[str]) -> None:
    print(f"{'mode':9} {'p50 µs':>8} {'p99 µs':>8} {'count':>6} {'max msg/s':>10} {'took s':>7}")
    for mode in modes:
        started = time.monotonic()
        lat = await latency(mode, 500, 5, 1, 100)
        rate = await max_rate(mode, 5, 100)
        print(
            f"{mode:9} {lat.p50_us:8.0f} {lat.p99_us:8.0f} {lat.count:6d} {rate:10.0f}"
            f" {time.monotonic() - started:7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(MODES)
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        sys.exit(f"usage: baselines.py [{' '.join(MODES)}]...; unknown: {' '.join(unknown)}")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_report(chosen))
