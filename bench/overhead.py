"""Overhead per hop, per mode: hopbench against the same client library used directly.

For each mode, one hop (load generator -> one service, no work) is measured twice:
by hopbench (real processes, its transports, recorder and envelope) and by the
minimal script in bench/baselines.py (the client library alone, server or consumer
in another process). Latency: p50 at a modest open-loop rate. Rate: request-reply
modes closed loop with 32 in flight; asynchronous modes flat out. Aims: latency
ratio <= 1.1, rate ratio >= 0.9.
"""

from __future__ import annotations

import sys

import uvloop

from bench import baselines
from bench.common import one_hop, run, write_section
from hopbench.runspec import LoadSpec

RATE, SECONDS, PAYLOAD = 500, 5, 100
MODES = ("http", "grpc", "kafka", "rabbitmq")


async def hopbench_latency(mode: str) -> float:
    load = LoadSpec(rate=RATE, duration_s=SECONDS, warmup_s=1, payload_bytes=PAYLOAD)
    result = await run(one_hop(mode), load)
    return result.latency_us.p50


async def hopbench_rate(mode: str, raw_rate: float) -> float:
    if mode in {"http", "grpc"}:
        load = LoadSpec(rate=1, duration_s=SECONDS, warmup_s=1, payload_bytes=PAYLOAD,
                        concurrency=32)  # fmt: skip
    else:  # ask for more than the raw client managed: what completes is the capacity
        load = LoadSpec(rate=raw_rate * 1.2, duration_s=SECONDS, warmup_s=1,
                        payload_bytes=PAYLOAD)  # fmt: skip
    result = await run(one_hop(mode), load)
    return result.completion_rate


async def main() -> None:
    modes = [m for m in sys.argv[1:] if m in MODES] or list(MODES)
    rows = []
    for mode in modes:
        raw = await baselines.latency(mode, RATE, SECONDS, 1, PAYLOAD)
        ours = await hopbench_latency(mode)
        raw_rate = await baselines.max_rate(mode, SECONDS, PAYLOAD)
        our_rate = await hopbench_rate(mode, raw_rate)
        rows.append(
            f"| {mode} | {raw.p50_us / 1000:.2f} | {ours / 1000:.2f} | **{ours / raw.p50_us:.2f}** "
            f"| {raw_rate:,.0f} | {our_rate:,.0f} | **{our_rate / raw_rate:.2f}** |"
        )
        print(rows[-1], flush=True)
    write_section(
        "Overhead per hop",
        f"""
One hop, no work, {PAYLOAD} B. Latency: p50 at {RATE}/s open loop for {SECONDS} s
(request-reply modes: round trip; Kafka and RabbitMQ: one way). Rate: request-reply
modes with 32 in flight; Kafka and RabbitMQ flat out (hopbench asked for 1.2x the raw
rate; what completed inside the window counts).

| mode | raw p50 ms | hopbench p50 ms | ratio (aim <= 1.1) | raw msgs/s | hopbench msgs/s \
| ratio (aim >= 0.9) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
