"""pika 1.x: a BlockingConnection per role, the consumer in its own thread and the
publisher in the calling thread."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pika

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
