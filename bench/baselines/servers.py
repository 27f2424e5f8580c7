"""The child-process side of a baseline: the server (HTTP, gRPC) or the consumer
(Kafka, RabbitMQ), in its own process on uvloop, talking to the caller over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import aiormq
import grpc
import uvicorn
import uvloop
from aiokafka import AIOKafkaConsumer
from aiormq.abc import DeliveredMessage
from fastapi import FastAPI, Request, Response

from bench.baselines.shared import (
    GRPC_SERVICE,
    HEADER,
    HOST,
    RABBITMQ_PREFETCH,
    READY_TIMEOUT_S,
    SETUP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    SYNC_MODES,
    identity,
    new_histogram,
    recv,
    send,
)


def child_main(conn: Connection, mode: str, target: tuple[str, str], lifetime_s: float) -> None:
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
        send(conn, "error", f"{mode} {'server' if mode in SYNC_MODES else 'consumer'}: "
             f"{type(exc).__name__}: {exc}")  # fmt: skip
    finally:
        conn.close()


async def _until_stopped(conn: Connection) -> None:
    """Wait for "stop" from the parent, or for the parent to go away."""
    with contextlib.suppress(EOFError, OSError):
        while (await recv(conn, math.inf))[0] != "stop":
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
            send(conn, "ready", sock.getsockname()[1])
            await _until_stopped(conn)
        finally:
            server.should_exit = True
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await serving


async def _serve_grpc(conn: Connection, _target: tuple[str, str]) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=identity, response_serializer=identity
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Call": handler}),)
    )
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        send(conn, "ready", port)
        await _until_stopped(conn)
    finally:
        await server.stop(grace=1)


class _Recorder:
    """Consumer-side bookkeeping: latency of measured messages, count, first and last."""

    def __init__(self) -> None:
        self.hist = new_histogram()
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
        send(conn, "ready", 0)
        try:
            message = await recv(conn, math.inf)
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
        send(conn, "result", self.hist.encode(), self.received, self.first_ns, self.last_ns)


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
