"""What both sides of a baseline share: the settings, the payload header, the histogram
and the pipe between the caller and its server or consumer process."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from multiprocessing.connection import Connection
from typing import Any

from hdrh.histogram import HdrHistogram

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


def new_histogram() -> Any:
    return HdrHistogram(1, 3_600_000_000, 3)


def identity(data: bytes) -> bytes:
    return data


# --------------------------------------------------------------------------- pipes


async def wait_readable(fd: int, timeout_s: float) -> None:
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


async def recv(conn: Connection, timeout_s: float) -> tuple[Any, ...]:
    """The next message on a multiprocessing pipe, without blocking the event loop.

    Raises TimeoutError, or EOFError when the other process has gone.
    """
    if not conn.poll():
        await wait_readable(conn.fileno(), timeout_s)
    message = conn.recv()
    assert isinstance(message, tuple)
    return message


def send(conn: Connection, *message: Any) -> None:
    with contextlib.suppress(OSError):  # the other end has gone: its own cleanup applies
        conn.send(message)
