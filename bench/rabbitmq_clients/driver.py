"""The run: each client's latency at each rate, then each client's throughput, with
the CPU time each took, and the report."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import threading
import time

from bench.rabbitmq_clients.async_clients import (
    ASYNC_CLIENTS,
    async_latency,
    async_throughput,
    run_on_uvloop,
)
from bench.rabbitmq_clients.pika_client import pika_latency, pika_throughput
from bench.rabbitmq_clients.shared import (
    DEFAULT_URL,
    DESCRIPTION,
    RATES,
    THROUGHPUT_N,
    LatencyResult,
    ThroughputResult,
)


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
    parser = argparse.ArgumentParser(
        prog="python -m bench.rabbitmq_clients", description=DESCRIPTION
    )
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
