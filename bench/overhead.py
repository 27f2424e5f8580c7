"""Overhead per hop, per mode: hopbench against the same client library used directly.

For each mode, one hop (load generator -> one service, no work) is measured twice:
by hopbench (real processes, its transports, recorder and envelope) and by the
minimal script in bench/baselines/ (the client library alone, server or consumer
in another process). Latency: p50 at a modest open-loop rate. Rate: request-reply
modes closed loop with 32 in flight; asynchronous modes flat out. Aims: latency
ratio <= 1.1, rate ratio >= 0.9.
"""

from __future__ import annotations

import statistics
import sys

import uvloop

from bench import baselines
from bench.common import one_hop, run, write_section
from hopbench.config.runspec import LoadSpec

RATE, SECONDS, PAYLOAD = 500, 5, 100
ROUNDS = 3  # the rates, raw and hopbench alternately: one crowded second moves a single run
MODES = ("http", "grpc", "kafka", "rabbitmq")


async def hopbench_latency(mode: str) -> float:
    load = LoadSpec(rate=RATE, duration_s=SECONDS, warmup_s=1, payload_bytes=PAYLOAD)
    result = await run(one_hop(mode), load)
    return result.latency_us.p50


async def hopbench_rate(mode: str) -> float:
    """Request-reply: 32 in flight. Asynchronous: double an open-loop rate until what
    completes inside the window falls below 90 % of it twice running at that rate (one
    miss is tried again); the best completion rate."""
    if mode in {"http", "grpc"}:
        load = LoadSpec(rate=1, duration_s=SECONDS, warmup_s=1, payload_bytes=PAYLOAD,
                        concurrency=32)  # fmt: skip
        return (await run(one_hop(mode), load)).completion_rate
    best, rate, missed = 0.0, 1000.0, False
    while rate <= 64_000:
        load = LoadSpec(rate=rate, duration_s=SECONDS, warmup_s=1, payload_bytes=PAYLOAD)
        result = await run(one_hop(mode), load)
        best = max(best, result.completion_rate)
        if result.completion_rate >= 0.9 * rate:
            rate, missed = rate * 2, False
        elif missed:
            break
        else:
            missed = True
    return best


async def main() -> None:
    modes = [m for m in sys.argv[1:] if m in MODES] or list(MODES)
    rows = []
    for mode in modes:
        raw = await baselines.latency(mode, RATE, SECONDS, 1, PAYLOAD)
        ours = await hopbench_latency(mode)
        raws, oursr = [], []
        for _ in range(ROUNDS):
            raws.append(await baselines.max_rate(mode, SECONDS, PAYLOAD))
            oursr.append(await hopbench_rate(mode))
        raw_rate, our_rate = statistics.median(raws), statistics.median(oursr)
        rounds = "; ".join(f"{a:,.0f} / {b:,.0f}" for a, b in zip(raws, oursr, strict=True))
        rows.append(
            f"| {mode} | {raw.p50_us / 1000:.2f} | {ours / 1000:.2f} | **{ours / raw.p50_us:.2f}** "
            f"| {raw_rate:,.0f} | {our_rate:,.0f} | **{our_rate / raw_rate:.2f}** | {rounds} |"
        )
        print(rows[-1], flush=True)
    write_section(
        "Overhead per hop",
        f"""
One hop, no work, {PAYLOAD} B. Latency: p50 at {RATE}/s open loop for {SECONDS} s
(request-reply modes: round trip; Kafka and RabbitMQ: one way); both pace with the same
precise ticker. Rate: request-reply modes with 32 in flight. Kafka and RabbitMQ: the raw
client publishes flat out without waiting for each publish (Kafka: acks gathered in
batches); hopbench's best completion rate while doubling an open-loop rate from
1,000/s (a rate that misses 90 % is tried once more before the search stops). The
rates are medians of {ROUNDS} rounds, raw and hopbench alternately (each round in the
last column, raw / hopbench). Its load worker hands each publish to the client
without waiting and counts a failure against that message when the ack (Kafka) or
the write of its batch (RabbitMQ) fails; the consuming service records every
completion, and one that never waits (no I/O, nothing to send on) handles each Kafka
fetch in one turn, no task per record.

| mode | raw p50 ms | hopbench p50 ms | ratio (aim <= 1.1) | raw msgs/s | hopbench msgs/s \
| ratio (aim >= 0.9) | rounds msgs/s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
