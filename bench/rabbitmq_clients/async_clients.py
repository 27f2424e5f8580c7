"""The asyncio clients, aio-pika and aiormq used directly, on uvloop: publisher and
consumer share one event loop."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aio_pika
import aiormq
import uvloop
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import AbstractConnection as RawConnection
from aiormq.abc import DeliveredMessage

from bench.rabbitmq_clients.shared import (
    CLOSE_TIMEOUT_S,
    DRAIN_GRACE_S,
    HARD_TIMEOUT_S,
    LatencyRecorder,
    LatencyResult,
    OnBody,
    Schedule,
    ThroughputResult,
    describe,
    make_body,
    queue_name,
)


class AsyncClient(Protocol):
    name: str

    async def open(self, on_body: OnBody) -> None: ...

    async def publish(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


async def _quietly(what: str, aw: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(aw, CLOSE_TIMEOUT_S)
    except Exception as exc:
        print(f"WARNING: cleanup {what}: {describe(exc)}", file=sys.stderr)


class AioPikaClient:
    name = "aio-pika"

    def __init__(self, url: str):
        self.url = url
        self.queue_name = queue_name("aiopika")
        self.pub_conn: AbstractConnection | None = None
        self.sub_conn: AbstractConnection | None = None
        self.queue: AbstractQueue | None = None
        self.consumer_tag: str | None = None
        self.exchange: AbstractExchange | None = None

    async def open(self, on_body: OnBody) -> None:
        self.sub_conn = await aio_pika.connect(self.url, timeout=10)
        self.pub_conn = await aio_pika.connect(self.url, timeout=10)
        sub_ch: AbstractChannel = await self.sub_conn.channel(publisher_confirms=False)
        pub_ch: AbstractChannel = await self.pub_conn.channel(publisher_confirms=False)
        self.queue = await sub_ch.declare_queue(self.queue_name, exclusive=True, auto_delete=True)

        async def callback(message: AbstractIncomingMessage) -> None:
            on_body(message.body)

        self.consumer_tag = await self.queue.consume(callback, no_ack=True)
        self.exchange = pub_ch.default_exchange

    async def publish(self, body: bytes) -> None:
        assert self.exchange is not None
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
        await self.exchange.publish(message, routing_key=self.queue_name)

    async def close(self) -> None:
        # cancel first, so that deleting the queue does not log a
        # broker-side consumer cancellation
        if self.queue is not None and self.consumer_tag is not None:
            await _quietly("cancel", self.queue.cancel(self.consumer_tag))
        if self.queue is not None:
            await _quietly("queue delete", self.queue.delete(if_unused=False, if_empty=False))
        for conn in (self.pub_conn, self.sub_conn):
            if conn is not None:
                await _quietly("connection close", conn.close())


class AiormqClient:
    name = "aiormq"

    def __init__(self, url: str):
        self.url = url
        self.queue_name = queue_name("aiormq")
        self.pub_conn: RawConnection | None = None
        self.sub_conn: RawConnection | None = None
        self.sub_ch: RawChannel | None = None
        self.pub_ch: RawChannel | None = None
        self.declared = False
        self.consumer_tag: str | None = None

    async def open(self, on_body: OnBody) -> None:
        self.sub_conn = await aiormq.connect(self.url)
        self.pub_conn = await aiormq.connect(self.url)
        self.sub_ch = await self.sub_conn.channel(publisher_confirms=False)
        self.pub_ch = await self.pub_conn.channel(publisher_confirms=False)
        await self.sub_ch.queue_declare(self.queue_name, exclusive=True, auto_delete=True)
        self.declared = True

        async def callback(message: DeliveredMessage) -> None:
            on_body(message.body)

        ok = await self.sub_ch.basic_consume(self.queue_name, callback, no_ack=True)
        self.consumer_tag = ok.consumer_tag

    async def publish(self, body: bytes) -> None:
        assert self.pub_ch is not None
        # fresh properties per message: basic_publish fills in message_id
        props = aiormq.spec.Basic.Properties(delivery_mode=1)
        await self.pub_ch.basic_publish(body, routing_key=self.queue_name, properties=props)

    async def close(self) -> None:
        sub_ch = self.sub_ch
        if sub_ch is not None and not sub_ch.is_closed:
            if self.consumer_tag is not None:
                await _quietly("cancel", sub_ch.basic_cancel(self.consumer_tag))
            if self.declared:
                await _quietly("queue delete", sub_ch.queue_delete(self.queue_name))
        for conn in (self.pub_conn, self.sub_conn):
            if conn is not None:
                await _quietly("connection close", conn.close())


ClientFactory = Callable[[str], AsyncClient]


def run_on_uvloop(main: Callable[[], Awaitable[Any]]) -> Any:
    async def wrapper() -> Any:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        return await main()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(wrapper())


async def async_latency(client: AsyncClient, rate: int) -> LatencyResult:
    result = LatencyResult(client.name, rate)
    sched = Schedule(rate)
    done = asyncio.Event()
    recorder = LatencyRecorder(sched.warmup, sched.total, done.set)
    try:
        async with asyncio.timeout(HARD_TIMEOUT_S):
            await client.open(recorder.on_body)
            sched.begin()
            for seq in range(sched.total):
                intended_ns = sched.intended(seq)
                delay_ns = intended_ns - time.monotonic_ns()
                if delay_ns > 0:
                    await asyncio.sleep(delay_ns / 1e9)
                sched.mark_sent(seq, intended_ns)
                await client.publish(make_body(seq, intended_ns))
            try:
                async with asyncio.timeout(DRAIN_GRACE_S):
                    await done.wait()
            except TimeoutError:
                pass  # shows up as received < sent
    except TimeoutError:
        result.error = f"hard timeout {HARD_TIMEOUT_S:.0f}s"
    except Exception as exc:
        result.error = describe(exc)
    finally:
        await client.close()  # every step bounded by CLOSE_TIMEOUT_S
    sched.fill(result, recorder)
    return result


async def async_throughput(client: AsyncClient, n: int) -> ThroughputResult:
    result = ThroughputResult(client.name, n)
    done = asyncio.Event()
    counter = [0, 0]  # received, time of last consume (ns)

    def on_body(_body: bytes) -> None:
        counter[0] += 1
        if counter[0] == n:
            counter[1] = time.monotonic_ns()
            done.set()

    try:
        async with asyncio.timeout(HARD_TIMEOUT_S):
            await client.open(on_body)
            t0 = time.monotonic_ns()
            for seq in range(n):
                await client.publish(make_body(seq, 0))
            await done.wait()
            result.seconds = (counter[1] - t0) / 1e9
            result.msgs_per_s = n / result.seconds
    except TimeoutError:
        result.error = f"hard timeout {HARD_TIMEOUT_S:.0f}s"
    except Exception as exc:
        result.error = describe(exc)
    finally:
        await client.close()
    result.received = counter[0]
    return result


ASYNC_CLIENTS: dict[str, ClientFactory] = {
    "aio-pika": AioPikaClient,
    "aiormq": AiormqClient,
}
