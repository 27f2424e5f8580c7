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

Run the package to print every mode's figures (about a minute)::

    .venv/bin/python -m bench.baselines [MODE ...]

The package: ``shared`` (settings, payload header, pipe), ``servers`` (the child
process: servers and consumers), ``clients`` (the caller's side: client or publisher,
schedule and pacing); ``latency()`` and ``max_rate()`` here; ``__main__`` the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from bench.baselines.clients import consumer_result, publisher, requester, schedule, sleep_until
from bench.baselines.shared import (
    CONCURRENCY,
    DRAIN_TIMEOUT_S,
    GRPC_METHOD,
    GRPC_SERVICE,
    HEADER,
    HOST,
    HTTP_CONNECTIONS,
    KAFKA_ACK_BATCH,
    MODES,
    RABBITMQ_PREFETCH,
    RABBITMQ_URL,
    READY_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    SETUP_TIMEOUT_S,
    START_DELAY_NS,
    STOP_TIMEOUT_S,
    SYNC_MODES,
    SYNC_WARMUP_S,
    new_histogram,
)

__all__ = [
    "CONCURRENCY",
    "DRAIN_TIMEOUT_S",
    "GRPC_METHOD",
    "GRPC_SERVICE",
    "HEADER",
    "HOST",
    "HTTP_CONNECTIONS",
    "KAFKA_ACK_BATCH",
    "MODES",
    "RABBITMQ_PREFETCH",
    "RABBITMQ_URL",
    "READY_TIMEOUT_S",
    "REQUEST_TIMEOUT_S",
    "SETUP_TIMEOUT_S",
    "START_DELAY_NS",
    "STOP_TIMEOUT_S",
    "SYNC_MODES",
    "SYNC_WARMUP_S",
    "Latency",
    "latency",
    "max_rate",
]


@dataclass(frozen=True)
class Latency:
    p50_us: float
    p99_us: float
    count: int


def _check(mode: str, payload_bytes: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if mode not in SYNC_MODES and payload_bytes < HEADER.size:
        raise ValueError(f"{mode} payloads carry a {HEADER.size}-byte header: {payload_bytes=}")


def _body(payload_bytes: int, intended_ns: int = 0, measured: bool = False) -> bytes:
    return HEADER.pack(intended_ns, measured) + bytes(payload_bytes - HEADER.size)


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
        hist = new_histogram()
        body = bytes(payload_bytes)
        async with requester(mode, lifetime_s) as call:

            async def one(intended_ns: int, measured: bool) -> None:
                await call(body)
                if measured:
                    hist.record_value(max(1, (time.monotonic_ns() - intended_ns) // 1000))

            async with asyncio.timeout(run_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
                for intended_ns, measured in schedule(rate, duration_s, warmup_s):
                    await sleep_until(intended_ns)
                    tg.create_task(one(intended_ns, measured))
                    await asyncio.sleep(0)  # let replies in even when behind schedule
        return _latency(hist)

    async with publisher(mode, lifetime_s) as pub:
        sent = 0
        async with asyncio.timeout(run_s + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as tg:
            for intended_ns, measured in schedule(rate, duration_s, warmup_s):
                await sleep_until(intended_ns)
                ack = await pub.publish(_body(payload_bytes, intended_ns, measured))
                if ack is not None:  # kafka: the ack is awaited off the send path
                    tg.create_task(_await(ack))
                sent += 1
        hist, received, _, _ = await consumer_result(pub, mode, sent, DRAIN_TIMEOUT_S)
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
        async with requester(mode, lifetime_s) as call:
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
    async with publisher(mode, lifetime_s) as pub:
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
        _, received, first_ns, last_ns = await consumer_result(
            pub, mode, sent, max(DRAIN_TIMEOUT_S, duration_s)
        )
    if received < 2 or last_ns <= first_ns:
        raise RuntimeError(f"{mode}: the consumer received {received} of {sent} messages")
    return (received - 1) / ((last_ns - first_ns) / 1e9)  # intervals between first and last
