"""The load generator's own cost: CPU per message against wrk and the raw clients.

On two cores every microsecond a load worker spends is taken from the services it
measures. This bench puts a number on it, per mode, as ratios taken within one run:

- **HTTP and gRPC** (request-reply): one bundled echo service process is started
  once; then, in rounds, each generator keeps 32 requests in flight against it for
  SECONDS (after 1 s of warm-up): wrk (HTTP only, ``-t1 -c32``), each raw client
  library in a process of its own (bench/raw_callers.py: aiohttp, pyreqwest, httpx;
  grpcio), and a hopbench load worker (closed loop, 32 users) with each client
  library it can use (``hopbench/aiohttp``; ``hopbench/pyreqwest`` where the
  ``http_client`` setting exists). The order within a round rotates, so the
  machine's drift falls on every generator alike. CPU per request: the generator
  process's CPU (every thread) over the requests it made. Each load worker is set
  against wrk and against its own library used raw; the raw HTTP libraries are also
  set side by side against wrk, to choose the generator's client by.
- **Kafka and RabbitMQ** (publish): the raw client (aiokafka; aiormq) paces an
  open-loop schedule at RATE/s with the same ticker, its consumer in another process
  (bench/baselines), and hopbench runs the same one hop at the same rate; CPU per
  message: the publishing process's CPU over the messages it sent (warm-up and
  drain included on both sides). Their highest rates are bench/overhead.py's.

Aims (issue 14): at most 2x wrk's CPU per request, at least 0.9x each raw client's
rate. Medians over ROUNDS; every round's figures are printed as they come. The load
average before and after is printed with the table: on a crowded machine every CPU
figure is inflated, the ratios much less.

    python -m bench.generator_cost [http] [grpc] [kafka] [rabbitmq] [--rounds N] [--seconds S]
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from bench import baselines
from bench.common import one_hop, run, write_section
from bench.generator_capacity import checked_result, lua_body
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.topology import Topology
from hopbench.control.child import Child
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.protocol.messages import (
    Progress,
    ProgressReply,
    Ready,
    Start,
    Stop,
    WorkerReport,
)
from hopbench.run.provision import allocate_endpoints

IN_FLIGHT, PAYLOAD, RATE = 32, 100, 1000
RAW_CLIENTS = {"http": ("aiohttp", "pyreqwest", "httpx"), "grpc": ("grpcio",)}
ASYNC_RAW = {"kafka": "aiokafka", "rabbitmq": "aiormq"}
MODES = ("http", "grpc", "kafka", "rabbitmq")
SERVICE_LIFETIME_S = 3600  # the service's schedule: bodies made now stay admissible


@dataclass
class Measured:
    """One generator's rounds: CPU µs per message and messages per second."""

    cpu_us: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)

    def add(self, cpu_s: float, messages: int, rate: float) -> None:
        if messages <= 0:
            raise SystemExit("a generator completed no message")
        self.cpu_us.append(cpu_s * 1e6 / messages)
        self.rate.append(rate)
        print(f"  {self.cpu_us[-1]:8.1f} µs/msg  {rate:9,.0f} msgs/s", flush=True)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def msgs(self) -> float:
        return statistics.median(self.rate)


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


async def wrk(url: str, script: Path, seconds: float) -> tuple[float, int, float]:
    """wrk flat out: (its CPU seconds, requests, requests per second)."""
    before = _children_cpu()
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{IN_FLIGHT}",
        f"-d{seconds:g}s",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    cpu_s = _children_cpu() - before  # wrk has been waited for: its whole CPU is here
    text = out.decode()
    count, per_s = (
        re.search(r"(\d+) requests in", text),
        re.search(r"Requests/sec:\s+([\d.]+)", text),
    )
    if "Non-2xx" in text or count is None or per_s is None:
        raise SystemExit(f"wrk failed or got errors from the service:\n{text}")
    return cpu_s, int(count.group(1)), float(per_s.group(1))


async def raw_caller(
    mode: str, client: str, address: str, seconds: float, body: Path
) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.raw_callers",
        mode,
        client,
        address,
        f"{seconds}",
        str(body),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the raw {client} caller failed (exit {proc.returncode})")
    found: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return found


async def hopbench_worker(spec_path: Path, spec: RunSpec, log: Path) -> tuple[float, int, float]:
    """One load worker, closed loop: (its CPU seconds, requests completed, per second)
    over the measured window, read from it at the window's start and end as the raw
    callers read themselves: the warm-up, the connections and the report excluded."""

    worker = await Child.spawn("loadgen/0", "hopbench.loadgen",
                               ["--worker", "0", "--spec", str(spec_path)], log)  # fmt: skip
    try:
        await worker.expect(Ready, 30)
        start_ns = time.monotonic_ns() + 100_000_000
        origin_ns = start_ns + int(spec.load.warmup_s * 1e9)
        worker.send(Start(start_ns=start_ns, origin_ns=origin_ns))
        marks = []
        for at_ns in (origin_ns, origin_ns + int(spec.load.duration_s * 1e9) - 50_000_000):
            await asyncio.sleep(max(0, at_ns - time.monotonic_ns()) / 1e9)
            worker.send(Progress())
            reply = await worker.expect(ProgressReply, 30)
            marks.append((time.monotonic_ns(), reply.usage.cpu_s, reply.completed))
        report = await worker.expect(WorkerReport, spec.load.duration_s + 60)
        worker.send(Stop())
    finally:
        await worker.kill()
    checked_result(spec, report)
    (t0, cpu0, done0), (t1, cpu1, done1) = marks
    return cpu1 - cpu0, done1 - done0, (done1 - done0) / ((t1 - t0) / 1e9)


def _specs(topology: Topology, seconds: float) -> tuple[RunSpec, RunSpec]:
    """The service's (a long schedule, so any body made now is admissible) and the
    load worker's (closed loop, 32 users, the bench's length), one run id."""
    endpoints = allocate_endpoints(topology)
    common = {"run_id": "generator-cost", "topology": topology.to_dict(), "endpoints": endpoints}
    serve = LoadSpec(
        rate=1,
        duration_s=SERVICE_LIFETIME_S,
        warmup_s=1,
        payload_bytes=PAYLOAD,
        concurrency=IN_FLIGHT,
    )
    drive = serve.model_copy(update={"duration_s": seconds})
    return RunSpec(load=serve, **common), RunSpec(load=drive, **common)


def _raw_body(spec: RunSpec) -> bytes:
    now = time.monotonic_ns()
    return Envelope(
        run_id=spec.run_id,
        flow=spec.resolved.name,
        worker=0,
        seq=0,
        intended_ns=now,
        sent_ns=now,
        payload=bytes(PAYLOAD),
    ).SerializeToString()


def installed(mode: str) -> list[str]:
    """The raw client libraries of the mode that this environment has (the others are
    named as skipped, never silently dropped)."""
    found = []
    for library in RAW_CLIENTS[mode]:
        module = "grpc" if library == "grpcio" else library
        if importlib.util.find_spec(module) is None:
            print(f"{mode}: {library} is not installed: its raw figures are skipped", flush=True)
        else:
            found.append(library)
    return found


def hopbench_clients(mode: str) -> list[str]:
    """The client libraries hopbench's load worker can use for the mode: each is run
    (``hopbench/LIBRARY``); a version without the http_client setting has aiohttp only."""
    if mode != "http" or "http_client" not in Settings.model_fields:
        return [RAW_CLIENTS[mode][0]]
    return ["aiohttp", "pyreqwest"]


def _drive_spec(drive: RunSpec, mode: str, library: str) -> RunSpec:
    if mode != "http" or "http_client" not in Settings.model_fields:
        return drive
    return drive.model_copy(update={"settings": Settings.model_validate({"http_client": library})})


async def request_reply(mode: str, rounds: int, seconds: float) -> dict[str, Measured]:
    """Every generator of one request-reply mode against one service, rounds rotated."""
    serve, drive = _specs(one_hop(mode), seconds)
    address = serve.endpoints[mode]["echo"][0]
    measured: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="hopbench-bench-") as tmp:
        serve.write(Path(tmp) / "serve.json")
        drives = {}
        for library in hopbench_clients(mode):
            spec = _drive_spec(drive, mode, library)
            spec.write(Path(tmp) / f"drive-{library}.json")
            drives[f"hopbench/{library}"] = (Path(tmp) / f"drive-{library}.json", spec)
        serve_path = Path(tmp) / "serve.json"
        body, script = Path(tmp) / "body.bin", Path(tmp) / "post.lua"
        body.write_bytes(_raw_body(serve))
        script.write_text(lua_body(_raw_body(serve)))
        service = await Child.spawn(
            "echo/0",
            "hopbench.services",
            ["--service", "echo", "--replica", "0", "--spec", str(serve_path)],
            Path(tmp) / "echo.log",
        )
        try:
            await service.expect(Ready, 30)
            names = (["wrk"] if mode == "http" else []) + [*installed(mode), *drives]
            for k in range(rounds):
                for name in names[k % len(names) :] + names[: k % len(names)]:
                    print(f"{mode} round {k + 1}: {name}", flush=True)
                    found = measured.setdefault(name, Measured())
                    if name == "wrk":
                        # wrk has no warm-up of its own: a second of it first, not counted
                        await wrk(f"http://{address}/edges/0", script, 1)
                        found.add(*await wrk(f"http://{address}/edges/0", script, seconds))
                    elif name in drives:
                        path, spec = drives[name]
                        found.add(*await hopbench_worker(path, spec, Path(tmp) / "lg.log"))
                    else:
                        raw = await raw_caller(mode, name, address, seconds, body)
                        found.add(
                            raw["cpu_s"], int(raw["requests"]), raw["requests"] / raw["wall_s"]
                        )
        finally:
            await service.kill()
    return measured


async def publish(mode: str, rounds: int, seconds: float) -> dict[str, Measured]:
    """The raw publisher and hopbench at the same open-loop rate, rounds alternated."""
    load = LoadSpec(rate=RATE, duration_s=seconds, warmup_s=1, payload_bytes=PAYLOAD)
    raw, ours = Measured(), Measured()
    for k in range(rounds):
        print(f"{mode} round {k + 1}", flush=True)
        for name in ("raw", "hopbench") if k % 2 == 0 else ("hopbench", "raw"):
            if name == "raw":
                before = time.process_time()
                got = await baselines.latency(mode, RATE, seconds, 1, PAYLOAD)
                messages = int(RATE * (seconds + 1))
                raw.add(time.process_time() - before, messages, got.count / seconds)
                continue
            result = await run(one_hop(mode), load)
            worker = next(p for p in result.processes if p.name == "loadgen/0")
            if worker.cpu_run_s is None or result.errors or result.lost:
                raise SystemExit(f"hopbench's {mode} run: {result.failure or 'no CPU measured'}")
            ours.add(worker.cpu_run_s, result.sent + result.warmup.sent, result.completion_rate)
    return {ASYNC_RAW[mode]: raw, f"hopbench/{ASYNC_RAW[mode]}": ours}


async def highest_rates(mode: str, seconds: float) -> tuple[float, float]:
    """bench/overhead.py's highest rates: the raw publisher flat out, hopbench doubling."""
    from bench.overhead import hopbench_rate

    return await baselines.max_rate(mode, seconds, PAYLOAD), await hopbench_rate(mode)


def _row(mode: str, ours: str, base: str, found: dict[str, Measured]) -> str:
    theirs, mine = found[base], found[ours]
    aim = " (aim <= 2)" if base == "wrk" else ""
    return (
        f"| {mode} | {ours} | {base} | {theirs.cpu:,.0f} | {mine.cpu:,.0f} "
        f"| **{mine.cpu / theirs.cpu:.2f}**{aim} | {theirs.msgs:,.0f} | {mine.msgs:,.0f} "
        f"| **{mine.msgs / theirs.msgs:.2f}** |"
    )


def rows_of(mode: str, found: dict[str, Measured]) -> tuple[list[str], list[str]]:
    """Each hopbench load worker against wrk and against its own library used raw; and,
    for HTTP, the raw libraries side by side against wrk."""
    ours = [name for name in found if name.startswith("hopbench/")]
    rows = []
    for name in ours:
        library = name.split("/", 1)[1]
        bases = ["wrk"] if "wrk" in found else []
        bases += [library] if library in found else []
        rows += [_row(mode, name, base, found) for base in bases]
    side = []
    if "wrk" in found:
        wrk_cpu = found["wrk"].cpu
        for name, got in found.items():
            side.append(
                f"| {name} | {got.cpu:,.0f} | **{got.cpu / wrk_cpu:.2f}** | {got.msgs:,.0f} |"
            )
    return rows, side


def _args(argv: list[str]) -> tuple[list[str], int, float]:
    modes = [a for a in argv if a in MODES] or list(MODES)
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 5.0
    return modes, rounds, seconds


async def main() -> None:
    modes, rounds, seconds = _args(sys.argv[1:])
    if "http" in modes and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian package)")
    load_before = os.getloadavg()
    rows: list[str] = []
    side: list[str] = []
    rate_rows: list[str] = []
    for mode in modes:
        found = await (request_reply if mode in RAW_CLIENTS else publish)(mode, rounds, seconds)
        more, clients = rows_of(mode, found)
        rows += more
        side += clients
        if mode in ASYNC_RAW:
            raw_max, our_max = await highest_rates(mode, seconds)
            rate_rows.append(
                f"| {mode} | {raw_max:,.0f} | {our_max:,.0f} | **{our_max / raw_max:.2f}** |"
            )
        print("\n".join(rows), flush=True)
    load_after = os.getloadavg()
    write_section(
        "Generator cost (CPU per message)",
        _section(rounds, seconds, rows, side, rate_rows, (load_before[0], load_after[0])),
    )


def _section(
    rounds: int,
    seconds: float,
    rows: list[str],
    side: list[str],
    rate_rows: list[str],
    load: tuple[float, float],
) -> str:
    clients = (
        f"""
The HTTP client libraries side by side (the same rounds; CPU µs per request of the
caller's process, and against wrk's):

| caller | µs/request | CPU vs wrk | requests/s |
|---|---|---|---|
{chr(10).join(side)}
"""
        if side
        else ""
    )
    rates = (
        f"""
Highest rates of the publishing modes (bench/overhead.py's method, {seconds:g} s each):

| mode | raw msgs/s | hopbench msgs/s | ratio (aim >= 0.9) |
|---|---|---|---|
{chr(10).join(rate_rows)}
"""
        if rate_rows
        else ""
    )
    return f"""
{os.cpu_count()} cores; load average {load[0]:.1f} before, {load[1]:.1f} after (a crowded
machine inflates every CPU figure; the ratios, taken in the same rounds, much less).
Medians of {rounds} rounds of {seconds:g} s, {PAYLOAD} B payloads. HTTP and gRPC: one echo
service, {IN_FLIGHT} requests in flight, every generator in turn against it; CPU µs per
request of the generator's process (wrk: `-t1 -c{IN_FLIGHT}`; the raw clients:
bench/raw_callers.py; `hopbench/LIBRARY`: a load worker with that client library).
Kafka and RabbitMQ: the raw publisher and hopbench at {RATE}/s open loop, CPU µs per
message of the publishing process.

| mode | generator | baseline | baseline µs/msg | generator µs/msg | CPU ratio \
| baseline msgs/s | generator msgs/s | rate ratio (aim >= 0.9) |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{clients}{rates}"""


if __name__ == "__main__":
    uvloop.run(main())
