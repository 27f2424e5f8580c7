"""What the per-hop breakdown costs per message, against the code before it, in one run.

The breakdown adds stamps to every hop (arrived, and where they apply gathered,
published, replied, returned: a clock read and a field each), bytes to every envelope,
and work to every completion (the recorder splits it into four parts per hop with exact
sums, where it kept two histograms per hop before). Each is timed here beside what it
replaced, in the same process (best of several rounds), on the two request-reply hops
of chain.yaml; then set against the CPU a real run of that chain spends per message
(every process: load worker and both services), measured in the same run.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from pathlib import Path

import uvloop
from hdrh.histogram import HdrHistogram

from bench.common import run, write_section
from hopbench import clock
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.topology import Topology
from hopbench.measure.histogram import new_histogram, record
from hopbench.measure.recorder import RouteRecord
from hopbench.proto.hopbench_pb2 import Envelope

ROUNDS, NUMBER = 7, 20_000
CHAIN = Path(__file__).resolve().parent.parent / "topologies" / "chain.yaml"
RATES, SECONDS = (300, 1000), 5


def chain_envelope(stamped: bool) -> Envelope:
    """A reply of the chain as the load worker gets it: gateway and worker hops."""
    t = clock.now_ns()
    env = Envelope(id=1, flow="chain", worker=0, seq=1, intended_ns=t, sent_ns=t + 5_000,
                   trace_id=7, run_id="abcdef12", payload=bytes(100))  # fmt: skip
    gateway = env.hops.add(edge=0, service="gateway", replica=0, received_ns=t + 90_000,
                           forwarded_ns=t + 120_000)  # fmt: skip
    worker = env.hops.add(edge=1, service="worker", replica=0, received_ns=t + 200_000,
                          forwarded_ns=t + 260_000)  # fmt: skip
    if stamped:
        gateway.arrived_ns, gateway.gathered_ns = t + 80_000, t + 390_000
        gateway.replied_ns = t + 400_000
        worker.arrived_ns, worker.replied_ns = t + 190_000, t + 270_000
        worker.returned_ns = t + 380_000
    return env


def record_before(hops: dict[str, tuple[HdrHistogram, HdrHistogram]], env: Envelope,
                  callers: dict[int, str]) -> None:  # fmt: skip
    """The recorder's per-hop work before the breakdown (RouteRecord.record_hops then)."""
    forwarded: dict[str, int] = {}
    for hop in env.hops:
        sent_ns = forwarded.get(callers.get(hop.edge, ""), env.sent_ns)
        pair = hops.get(hop.service)
        if pair is None:
            pair = hops[hop.service] = (new_histogram(), new_histogram())
        record(pair[0], (hop.received_ns - sent_ns) // 1000)
        record(pair[1], (hop.forwarded_ns - hop.received_ns) // 1000)
        forwarded[hop.service] = hop.forwarded_ns


def best_us(statement: Callable[[], object]) -> float:
    """µs per call: the best of ROUNDS rounds of NUMBER calls (the least disturbed)."""
    return min(timeit.repeat(statement, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def best_pair_us(before: Callable[[], object], after: Callable[[], object]) -> tuple[float, float]:
    """Both statements, their rounds interleaved so that a busy spell on a shared
    machine falls on both alike; µs per call, the best round of each."""
    rounds: tuple[list[float], list[float]] = ([], [])
    for _ in range(ROUNDS):
        for times, statement in zip(rounds, (before, after), strict=True):
            times.append(timeit.timeit(statement, number=NUMBER) / NUMBER * 1e6)
    return min(rounds[0]), min(rounds[1])


def stamp_cost_us() -> float:
    """One stamp: a clock read into a hop field (the transport's or the runtime's)."""
    hop = chain_envelope(False).hops[0]

    def stamp() -> None:
        hop.arrived_ns = clock.now_ns()

    return best_us(stamp)


def codec_us() -> tuple[float, float]:
    """Encode and decode the envelope once, without and with the new stamps."""
    before, after = chain_envelope(False), chain_envelope(True)
    return best_pair_us(
        lambda: Envelope.FromString(before.SerializeToString()),
        lambda: Envelope.FromString(after.SerializeToString()),
    )


def recorder_us(topology: Topology) -> tuple[float, float]:
    """The recorder's per-completion hop work: before, and with the breakdown."""
    env = chain_envelope(True)
    callers, request_reply = topology.callers, topology.request_reply
    before: dict[str, tuple[HdrHistogram, HdrHistogram]] = {}
    now = RouteRecord()
    done = env.hops[0].replied_ns + 10_000
    return best_pair_us(
        lambda: record_before(before, env, callers),
        lambda: now.record_hops((), env, done, callers, request_reply),
    )


async def run_cpu_us(topology: Topology, rate: int) -> float:
    """CPU µs per message of a real run of the chain: every process, from ready to the
    end, over every message sent (warm-up included, as its CPU is)."""
    load = LoadSpec(rate=rate, duration_s=SECONDS, warmup_s=1, payload_bytes=100)
    result = await run(topology, load)
    messages = result.sent + result.warmup.sent
    return sum(p.cpu_run_s or 0.0 for p in result.processes) * 1e6 / max(messages, 1)


async def main() -> None:
    topology = load_topology(CHAIN, mode="http")
    stamp = stamp_cost_us()
    bytes_before = len(chain_envelope(False).SerializeToString())
    bytes_after = len(chain_envelope(True).SerializeToString())
    codec_before, codec_after = codec_us()
    rec_before, rec_after = recorder_us(topology)
    # per message on the chain: 2 arrivals, the gateway's gathered and replied, the
    # worker's replied, and the returned stamp on the worker's reply: 6 stamps; three
    # envelope trips carry hops with the new fields (the request to the worker, its
    # reply, the gateway's reply), each timed with both hops: an upper bound
    added = 6 * stamp + 3 * (codec_after - codec_before) + (rec_after - rec_before)
    cpu = {rate: await run_cpu_us(topology, rate) for rate in RATES}
    shares = ", ".join(
        f"**{cpu[rate]:,.0f} µs** at {rate}/s (the breakdown: **{added / cpu[rate]:.1%}**)"
        for rate in RATES
    )
    rows = [
        ("one stamp (clock read + field)", "-", f"{stamp:.2f}"),
        ("envelope bytes (2 hops, 100 B payload)", f"{bytes_before}", f"{bytes_after}"),
        ("encode + decode once", f"{codec_before:.2f}", f"{codec_after:.2f}"),
        ("recorder: hop work per completion", f"{rec_before:.2f}", f"{rec_after:.2f}"),
    ]
    table = "\n".join(f"| {name} | {a} | {b} |" for name, a, b in rows)
    write_section(
        "Cost of the per-hop breakdown",
        f"""
chain.yaml over HTTP (2 request-reply hops). Times are µs per call, the best of
{ROUNDS} rounds of {NUMBER:,} calls, before (the code the breakdown replaced, kept in
bench/hop_stamps.py) and after, in the same process, their rounds interleaved.

| per message | before | after |
|---|---|---|
{table}

Added per message: 6 stamps, 3 encode/decode passes with the new fields, and the
recorder's extra work: **{added:.1f} µs**. Real runs of the same chain for {SECONDS} s
spent, in CPU per message over every process (load worker and both services, warm-up
and idle included): {shares}.
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
