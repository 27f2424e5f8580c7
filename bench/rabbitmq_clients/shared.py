"""What every client's measurement shares: the settings, the message body, the results,
the consumer-side recorder and the open-loop schedule."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
