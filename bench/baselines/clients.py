"""The caller's side of a baseline: the child process's lifecycle, the client or
publisher (with the broker resources it needs), and the open-loop schedule and pacing."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
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
from aiokafka import AIOKafkaProducer

from bench.baselines.servers import child_main
from bench.baselines.shared import (
    GRPC_METHOD,
    HOST,
    HTTP_CONNECTIONS,
    RABBITMQ_URL,
    READY_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    SETUP_TIMEOUT_S,
    START_DELAY_NS,
    STOP_TIMEOUT_S,
    identity,
    new_histogram,
    recv,
    send,
    wait_readable,
)
from hopbench.brokers.tansu import TansuBroker
from hopbench.loadgen.ticker import Ticker


async def _reap(proc: BaseProcess) -> None:
    """Wait for the child to exit; SIGTERM, then SIGKILL it if it lingers."""
    for signal_it in (None, proc.terminate, proc.kill):
        if proc.exitcode is not None:
            break
        if signal_it is not None:
            signal_it()
        with contextlib.suppress(TimeoutError):
            await wait_readable(proc.sentinel, STOP_TIMEOUT_S)  # readable once it has exited
    proc.join(STOP_TIMEOUT_S)  # it has exited: this only reaps it


async def _expect(conn: Connection, kind: str, timeout_s: float, mode: str) -> tuple[Any, ...]:
    try:
        message = await recv(conn, timeout_s)
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
        target=child_main,
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
        send(conn, "stop")
        if proc.pid is not None:
            await _reap(proc)
        conn.close()


@contextlib.asynccontextmanager
async def requester(
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
                    GRPC_METHOD, request_serializer=identity, response_deserializer=identity
                )

                async def grpc_call(body: bytes) -> None:
                    reply = await stub(body, timeout=REQUEST_TIMEOUT_S)
                    if len(reply) != len(body):
                        raise RuntimeError(f"grpc: {len(reply)} bytes back, sent {len(body)}")

                yield grpc_call


@dataclass
class Publisher:
    conn: Connection  # to the consumer process
    publish: Callable[[bytes], Awaitable[Any]]  # kafka: returns the ack future; rabbitmq: None


@contextlib.asynccontextmanager
async def publisher(mode: str, lifetime_s: float) -> AsyncIterator[Publisher]:
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

                        yield Publisher(conn, kafka_send)
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

                yield Publisher(conn, rabbitmq_send)
        finally:
            try:
                if declared:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        cleanup = await connection.channel()
                        await cleanup.queue_delete(name)
            finally:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await connection.close()


async def consumer_result(
    pub: Publisher, mode: str, sent: int, drain_s: float
) -> tuple[Any, int, int, int]:
    """(histogram, received, first_ns, last_ns) from the consumer process."""
    pub.conn.send(("end", sent, drain_s))
    _, encoded, received, first_ns, last_ns = await _expect(
        pub.conn, "result", drain_s + STOP_TIMEOUT_S, mode
    )
    hist = new_histogram()
    hist.decode_and_add(encoded)
    return hist, received, first_ns, last_ns


def schedule(rate: float, duration_s: float, warmup_s: float) -> Iterator[tuple[int, bool]]:
    """(intended send time in monotonic ns, measured?) for each message, in order."""
    t0 = time.monotonic_ns() + START_DELAY_NS
    warmup_ns = warmup_s * 1e9
    for i in range(round(rate * (warmup_s + duration_s))):
        offset_ns = round(i * 1e9 / rate)
        yield t0 + offset_ns, offset_ns >= warmup_ns


_TICKERS: dict[asyncio.AbstractEventLoop, Ticker] = {}


async def sleep_until(when_ns: int) -> None:
    """Pace as hopbench does (a thread sleeping precisely, not the loop's 1 ms timers),
    so that the latency ratio compares the transports, not the pacing."""
    if when_ns - time.monotonic_ns() <= 20_000:
        return
    loop = asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = Ticker()
    await ticker.until(when_ns)
