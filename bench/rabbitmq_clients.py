"""Compare Python RabbitMQ clients for an asyncio service runtime.

Clients:

* ``pika`` 1.x ``BlockingConnection``: one connection per role, the
  consumer in its own thread, the publisher in the main thread.
* ``aio-pika``: plain ``aio_pika.connect`` (not robust), channels opened
  with ``publisher_confirms=False``.
* ``aiormq`` used directly: channels with ``publisher_confirms=False``,
  ``basic_publish`` / ``basic_consume``.

All clients use the same setup: one connection for publishing and one for
consuming, ``no_ack=True`` (auto-ack) consumers, no publisher confirms,
transient messages (delivery_mode=1) with 100-byte bodies, the default
exchange and a fresh, uniquely named, exclusive auto-delete queue per run.
The asyncio clients run on uvloop; publisher and consumer share one loop.

Measurements:

1. One-way latency, open loop: messages are published on a fixed schedule
   (500 and 2000 msg/s, 1 s warm-up then 4 s measured). Each body carries
   its *intended* send time (``time.monotonic_ns()``), so a publisher that
   falls behind schedule is charged for it (no coordinated omission).
   latency = consume-callback time - intended send time, recorded in an
   HdrHistogram in microseconds; p50/p99/max and the achieved publish rate
   are reported.
2. Max throughput: N=20000 messages published as fast as possible while
   being consumed in the same process; msgs/s from first publish to last
   consume.

Every measurement has a hard 30 s timeout; connections are closed and
queues deleted in ``finally`` blocks. The whole run takes about a minute.

Run from the repository root (broker URL overridable with ``--url`` or
``HOPBENCH_AMQP_URL``)::

    .venv/bin/python bench/rabbitmq_clients.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import struct
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import aiormq
import pika
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
from hdrh.histogram import HdrHistogram

DESCRIPTION = "Compare Python RabbitMQ clients for an asyncio service runtime."
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
BODY_SIZE = 100
RATES = (500, 2000)
WARMUP_S = 1.0
MEASURE_S = 4.0
THROUGHPUT_N = 20_000
HARD_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 5.0  # wait for stragglers after the last publish
CLOSE_TIMEOUT_S = 5.0
START_DELAY_NS = 10_000_000  # schedule starts 10 ms after setup

# body = seq (int64) | intended send time in ns (int64) | zero padding
HEADER = struct.Struct("<qq")
PADDING = b"\0" * (BODY_SIZE - HEADER.size)

OnBody = Callable[[bytes], None]


def make_body(seq: int, intended_ns: int) -> bytes:
    return HEADER.pack(seq, intended_ns) + PADDING


def queue_name(client: str) -> str:
    return f"hopbench.{client}.{uuid.uuid4().hex}"


def new_histogram() -> Any:
    return HdrHistogram(1, 60_000_000, 3)


@dataclass
class LatencyResult:
    client: str
    target_rate: int
    achieved_rate: float = 0.0
    p50_us: int = 0
    p99_us: int = 0
    max_us: int = 0
    sent: int = 0
    received: int = 0
    rejected: int = 0
    send_lag_p99_us: int = 0
    cpu_s: float = 0.0  # CPU time of this process (all threads), setup included
    error: str | None = None


@dataclass
class ThroughputResult:
    client: str
    n: int
    msgs_per_s: float = 0.0
    seconds: float = 0.0
    received: int = 0
    cpu_s: float = 0.0
    error: str | None = None


class LatencyRecorder:
    """Consumer-side bookkeeping shared by all clients.

    ``on_body`` runs in the consumer callback (event loop or pika consumer
    thread); it is the only writer of ``hist``/``received``/``rejected``.
    """

    def __init__(self, warmup: int, total: int, on_complete: Callable[[], None]):
        self.warmup = warmup
        self.total = total
        self.on_complete = on_complete
        self.hist: Any = new_histogram()
        self.received = 0
        self.rejected = 0

    def on_body(self, body: bytes) -> None:
        now_ns = time.monotonic_ns()
        seq, intended_ns = HEADER.unpack_from(body)
        self.received += 1
        if seq >= self.warmup:
            latency_us = max(0, (now_ns - intended_ns) // 1000)
            if not self.hist.record_value(latency_us):
                self.rejected += 1
        if self.received == self.total:
            self.on_complete()


class Schedule:
    """Open-loop send schedule plus publisher-side bookkeeping."""

    def __init__(self, rate: int):
        self.rate = rate
        self.warmup = int(rate * WARMUP_S)
        self.total = self.warmup + int(rate * MEASURE_S)
        self.interval_ns = 1_000_000_000 / rate
        self.start_ns = 0
        self.first_measured_ns = 0
        self.last_ns = 0
        self.sent = 0
        self.lag_hist: Any = new_histogram()

    def begin(self) -> None:
        self.start_ns = time.monotonic_ns() + START_DELAY_NS

    def intended(self, seq: int) -> int:
        return self.start_ns + int(seq * self.interval_ns)

    def mark_sent(self, seq: int, intended_ns: int) -> None:
        """Call right before publishing ``seq``."""
        now_ns = time.monotonic_ns()
        if seq == self.warmup:
            self.first_measured_ns = now_ns
        self.last_ns = now_ns
        self.sent = seq + 1
        if seq >= self.warmup:
            self.lag_hist.record_value(max(0, (now_ns - intended_ns) // 1000))

    def fill(self, result: LatencyResult, recorder: LatencyRecorder) -> None:
        measured_sent = self.sent - self.warmup
        span_ns = self.last_ns - self.first_measured_ns
        if measured_sent > 1 and span_ns > 0:
            result.achieved_rate = (measured_sent - 1) / (span_ns / 1e9)
        result.sent = self.sent
        result.received = recorder.received
        result.rejected = recorder.rejected
        hist = recorder.hist
        if hist.get_total_count() > 0:
            result.p50_us = int(hist.get_value_at_percentile(50))
            result.p99_us = int(hist.get_value_at_percentile(99))
            result.max_us = int(hist.get_max_value())
        if self.lag_hist.get_total_count() > 0:
            result.send_lag_p99_us = int(self.lag_hist.get_value_at_percentile(99))


def describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:120]


# --------------------------------------------------------------------------
# pika (BlockingConnection, consumer thread + publisher in calling thread)
# --------------------------------------------------------------------------


def pika_params(url: str) -> Any:
    params = pika.URLParameters(url)
    params.socket_timeout = 5.0
    params.stack_timeout = 10.0
    params.blocked_connection_timeout = HARD_TIMEOUT_S
    return params


class PikaConsumer(threading.Thread):
    """Owns its own BlockingConnection; declares, consumes, deletes."""

    def __init__(self, url: str, queue: str, on_body: OnBody, deadline_ns: int):
        super().__init__(name=f"pika-consumer-{queue[-8:]}", daemon=True)
        self.url = url
        self.queue = queue
        self.on_body = on_body
        self.deadline_ns = deadline_ns
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn: Any = None
        channel: Any = None

        def callback(_ch: Any, _method: Any, _props: Any, body: bytes) -> None:
            self.on_body(body)

        try:
            conn = pika.BlockingConnection(pika_params(self.url))
            channel = conn.channel()
            channel.queue_declare(queue=self.queue, exclusive=True, auto_delete=True)
            channel.basic_consume(queue=self.queue, on_message_callback=callback, auto_ack=True)
            self.ready.set()
            while not self.stop.is_set() and time.monotonic_ns() < self.deadline_ns:
                conn.process_data_events(time_limit=0.05)
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self.ready.set()
            try:
                if channel is not None and channel.is_open:
                    channel.queue_delete(queue=self.queue)
            except Exception as exc:
                self.error = self.error or exc
            try:
                if conn is not None and conn.is_open:
                    conn.close()
            except Exception as exc:
                self.error = self.error or exc


class PikaRun:
    """Context for one pika measurement: consumer thread + publisher conn."""

    def __init__(self, url: str, on_body: OnBody):
        self.url = url
        self.queue = queue_name("pika")
        self.deadline_ns = time.monotonic_ns() + int(HARD_TIMEOUT_S * 1e9)
        self.consumer = PikaConsumer(url, self.queue, on_body, self.deadline_ns)
        self.conn: Any = None
        self.channel: Any = None
        self.props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Transient)

    def remaining_s(self) -> float:
        return max(0.0, (self.deadline_ns - time.monotonic_ns()) / 1e9)

    def check_deadline(self) -> None:
        if time.monotonic_ns() >= self.deadline_ns:
            raise TimeoutError(f"hard timeout {HARD_TIMEOUT_S:.0f}s")

    def __enter__(self) -> PikaRun:
        try:
            self.consumer.start()
            if not self.consumer.ready.wait(timeout=self.remaining_s()):
                raise TimeoutError("pika consumer did not become ready")
            if self.consumer.error is not None:
                raise RuntimeError(describe(self.consumer.error))
            self.conn = pika.BlockingConnection(pika_params(self.url))
            self.channel = self.conn.channel()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def publish(self, body: bytes) -> None:
        self.channel.basic_publish(
            exchange="", routing_key=self.queue, body=body, properties=self.props
        )

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        finally:
            self.consumer.stop.set()
            if self.consumer.is_alive():
                self.consumer.join(timeout=CLOSE_TIMEOUT_S + 1)
            if self.consumer.is_alive():
                print(f"WARNING: {self.consumer.name} still alive", file=sys.stderr)


def pika_latency(url: str, rate: int) -> LatencyResult:
    result = LatencyResult("pika", rate)
    sched = Schedule(rate)
    done = threading.Event()
    recorder = LatencyRecorder(sched.warmup, sched.total, done.set)
    try:
        with PikaRun(url, recorder.on_body) as run:
            sched.begin()
            for seq in range(sched.total):
                intended_ns = sched.intended(seq)
                delay_ns = intended_ns - time.monotonic_ns()
                if delay_ns > 0:
                    time.sleep(delay_ns / 1e9)
                run.check_deadline()
                sched.mark_sent(seq, intended_ns)
                run.publish(make_body(seq, intended_ns))
            done.wait(timeout=min(DRAIN_GRACE_S, run.remaining_s()))
    except Exception as exc:
        result.error = describe(exc)
    # the consumer thread has been joined: recorder is safe to read
    sched.fill(result, recorder)
    return result


def pika_throughput(url: str, n: int) -> ThroughputResult:
    result = ThroughputResult("pika", n)
    done = threading.Event()
    counter = [0, 0]  # received, time of last consume (ns)

    def on_body(_body: bytes) -> None:
        counter[0] += 1
        if counter[0] == n:
            counter[1] = time.monotonic_ns()
            done.set()

    try:
        with PikaRun(url, on_body) as run:
            t0 = time.monotonic_ns()
            for seq in range(n):
                if seq % 1000 == 0:
                    run.check_deadline()
                run.publish(make_body(seq, 0))
            if not done.wait(timeout=run.remaining_s()):
                raise TimeoutError(f"hard timeout {HARD_TIMEOUT_S:.0f}s")
            result.seconds = (counter[1] - t0) / 1e9
            result.msgs_per_s = n / result.seconds
    except Exception as exc:
        result.error = describe(exc)
    result.received = counter[0]
    return result


# --------------------------------------------------------------------------
# asyncio clients (run on uvloop)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_latency(url: str, client: str, rate: int) -> LatencyResult:
    cpu0 = cpu_seconds()
    result: LatencyResult
    if client == "pika":
        result = pika_latency(url, rate)
    else:
        factory = ASYNC_CLIENTS[client]
        result = run_on_uvloop(lambda: async_latency(factory(url), rate))
    result.cpu_s = cpu_seconds() - cpu0
    return result


def measure_throughput(url: str, client: str, n: int) -> ThroughputResult:
    cpu0 = cpu_seconds()
    result: ThroughputResult
    if client == "pika":
        result = pika_throughput(url, n)
    else:
        factory = ASYNC_CLIENTS[client]
        result = run_on_uvloop(lambda: async_throughput(factory(url), n))
    result.cpu_s = cpu_seconds() - cpu0
    return result


ASYNC_CLIENTS: dict[str, ClientFactory] = {
    "aio-pika": AioPikaClient,
    "aiormq": AiormqClient,
}
CLIENTS = ("pika", "aio-pika", "aiormq")


def versions() -> str:
    from importlib.metadata import version

    pkgs = ("pika", "aio-pika", "aiormq", "pamqp", "uvloop", "hdrhistogram")
    listed = ", ".join(f"{p} {version(p)}" for p in pkgs)
    return f"Python {platform.python_version()}, {listed}, {os.cpu_count()} CPUs"


def print_report(latencies: list[LatencyResult], throughputs: list[ThroughputResult]) -> None:
    print()
    print("| client | target rate | achieved | p50 µs | p99 µs | max µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in latencies:
        print(
            f"| {r.client} | {r.target_rate} | {r.achieved_rate:.1f} "
            f"| {r.p50_us} | {r.p99_us} | {r.max_us} |"
        )
    print()
    for t in throughputs:
        if t.error is None:
            print(
                f"max throughput {t.client}: {t.msgs_per_s:,.0f} msg/s "
                f"({t.n} msgs in {t.seconds:.2f} s, "
                f"{t.cpu_s / t.n * 1e6:.0f} µs CPU/msg)"
            )
        else:
            print(f"max throughput {t.client}: FAILED ({t.error}; received {t.received}/{t.n})")
    print()
    print(
        "diagnostics (send lag = actual publish start - intended time; "
        "CPU = this process, all threads, incl. setup):"
    )
    for r in latencies:
        status = "ok" if r.error is None else f"ERROR {r.error}"
        cpu_per_msg = r.cpu_s / r.sent * 1e6 if r.sent else 0.0
        print(
            f"  {r.client:8} @{r.target_rate:5}: sent {r.sent} received "
            f"{r.received} hdr-rejected {r.rejected} "
            f"send-lag p99 {r.send_lag_p99_us} µs, CPU {cpu_per_msg:.0f} µs/msg  "
            f"{status}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--url", default=os.environ.get("HOPBENCH_AMQP_URL", DEFAULT_URL))
    args = parser.parse_args()
    url: str = args.url

    started = time.monotonic()
    print(f"# RabbitMQ client benchmark ({versions()})")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    print(
        "# pika: BlockingConnection, consumer thread + publisher thread; "
        "asyncio clients on uvloop; no_ack=True; no confirms; transient"
    )
    latencies: list[LatencyResult] = []
    for rate in RATES:
        for client in CLIENTS:
            latencies.append(measure_latency(url, client, rate))
    throughputs = [measure_throughput(url, c, THROUGHPUT_N) for c in CLIENTS]
    print_report(latencies, throughputs)

    leftover = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print(
        f"\nelapsed {time.monotonic() - started:.1f} s; "
        f"load average {os.getloadavg()[0]:.2f}; leftover threads: {leftover}"
    )
    failed = any(r.error for r in latencies) or any(t.error for t in throughputs)
    return 1 if failed or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
