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

    .venv/bin/python -m bench.rabbitmq_clients

The package: ``shared`` (settings, body, results, recorder, schedule),
``pika_client``, ``async_clients`` (aio-pika and aiormq), ``driver`` (the run and
the report).
"""

from __future__ import annotations

from bench.rabbitmq_clients.async_clients import (
    ASYNC_CLIENTS,
    AioPikaClient,
    AiormqClient,
    AsyncClient,
    async_latency,
    async_throughput,
)
from bench.rabbitmq_clients.driver import (
    CLIENTS,
    main,
    measure_latency,
    measure_throughput,
    print_report,
)
from bench.rabbitmq_clients.pika_client import pika_latency, pika_throughput
from bench.rabbitmq_clients.shared import LatencyResult, ThroughputResult

__all__ = [
    "ASYNC_CLIENTS",
    "CLIENTS",
    "AioPikaClient",
    "AiormqClient",
    "AsyncClient",
    "LatencyResult",
    "ThroughputResult",
    "async_latency",
    "async_throughput",
    "main",
    "measure_latency",
    "measure_throughput",
    "pika_latency",
    "pika_throughput",
    "print_report",
]
