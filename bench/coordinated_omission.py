"""Coordinated omission: freeze the service for 1 s in a 10 s run at a fixed rate.

A tool that starts the clock at the actual send (wrk, k6, Locust, ghz) reports only
the few requests caught in flight; one that starts it at the intended send (wrk2,
hopbench) charges every request the schedule wanted to send during the stall. With
200/s and a 1 s stall, about 10 % of the samples should carry up to a second of
delay, so latency p99 must be near a second, while service time (the CO-affected
view, with 32 requests in flight as wrk -c32 would have) must stay far lower
further down the distribution.
"""

from __future__ import annotations

import uvloop

from bench.common import one_hop, run, write_section
from hopbench.config.faults import Pause
from hopbench.config.runspec import LoadSpec

RATE, DURATION_S, PAUSE_AT_S, PAUSE_S, IN_FLIGHT = 200, 10, 4, 1, 32


async def main() -> None:
    load = LoadSpec(rate=RATE, duration_s=DURATION_S, warmup_s=1, payload_bytes=100,
                    max_in_flight=IN_FLIGHT)  # fmt: skip
    result = await run(one_hop("http"), load, pauses=[Pause("echo/0", PAUSE_AT_S, PAUSE_S)])
    lat, svc = result.latency_us, result.service_time_us
    rows = [
        f"| {name} | {lat_v / 1000:.1f} | {svc_v / 1000:.1f} |"
        for name, lat_v, svc_v in [
            ("p50", lat.p50, svc.p50), ("p90", lat.p90, svc.p90), ("p99", lat.p99, svc.p99),
            ("max", lat.max, svc.max), ("mean", lat.mean, svc.mean),
        ]
    ]  # fmt: skip
    stall = [p for p in result.timeline if PAUSE_AT_S <= p.t_s <= PAUSE_AT_S + PAUSE_S]
    verdict = "PASS" if lat.p99 >= 0.8 * PAUSE_S * 1e6 and lat.p90 > 5 * svc.p90 else "FAIL"
    write_section(
        "Coordinated omission",
        f"""
One HTTP hop at {RATE}/s for {DURATION_S} s, the service frozen (SIGSTOP) for {PAUSE_S} s
at t={PAUSE_AT_S} s, at most {IN_FLIGHT} requests in flight. {result.completed} of
{result.sent} completed, {result.lost} lost, the run ended on its own.

| ms | latency (from intended send) | service time (from actual send) |
|---|---|---|
{chr(10).join(rows)}

Latency p99 {lat.p99 / 1000:.0f} ms reflects the {PAUSE_S * 1000:.0f} ms stall (expected: about
{0.9 * PAUSE_S * 1000:.0f} ms, since ~10 % of the schedule fell in it); service time, which
starts the clock when a request finally goes out, puts p90 at {svc.p90 / 1000:.1f} ms against
{lat.p90 / 1000:.1f} ms. The timeline shows the stall: {
            ", ".join(
                f"t={p.t_s} s: {p.completed} done, p99 {p.p99_us / 1000:.0f} ms" for p in stall
            )
        }. Sends held at the in-flight limit: {result.in_flight_waits}.

Verdict: {verdict} (latency p99 >= 80 % of the stall, and latency p90 > 5x service-time p90).
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
