"""Generator capacity: hopbench's HTTP load versus wrk, same service, same concurrency.

One bundled HTTP service process (the echo of a one-hop topology) is started once;
then, alternating to spread the machine's noise evenly, wrk (-t1 -c32) and a
hopbench load worker (closed loop, 32 users) each drive it flat out for 10 s. The
ratio hopbench/wrk of requests per second says whether hopbench's generator, not the
service, is what a user would be measuring. Aim: >= 0.9.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from bench.common import one_hop, write_section
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.control.child import Child
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.protocol.messages import Ready, Start, Stop, WorkerReport
from hopbench.results.build import build_result
from hopbench.results.schema import RunResult
from hopbench.run.provision import allocate_endpoints

CONNECTIONS, SECONDS, ROUNDS = 32, 10, 2


def lua_body(body: bytes) -> str:
    """wrk's script: POST body (an envelope the service admits)."""
    escaped = "".join(f"\\{b:03d}" for b in body)
    return f'wrk.method = "POST"\nwrk.body = "{escaped}"\n' + (
        'wrk.headers["content-type"] = "application/x-protobuf"\n'
    )


async def wrk(url: str, script: Path) -> float:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", str(script), url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode()
    if "Non-2xx" in text:
        raise SystemExit(f"wrk got errors from the service:\n{text}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match is None:
        raise SystemExit(f"could not read wrk's output:\n{text}")
    return float(match.group(1))


async def hopbench_load(spec_path: Path, spec: RunSpec, log: Path) -> float:
    worker = await Child.spawn("loadgen/0", "hopbench.loadgen",
                               ["--worker", "0", "--spec", str(spec_path)], log)  # fmt: skip
    try:
        await worker.expect(Ready, 30)
        start_ns = time.monotonic_ns() + 100_000_000
        worker.send(Start(start_ns=start_ns, origin_ns=start_ns + int(spec.load.warmup_s * 1e9)))
        report = await worker.expect(WorkerReport, SECONDS + 60)
        worker.send(Stop())
    finally:
        await worker.kill()
    return checked_result(spec, report).completion_rate


def checked_result(spec: RunSpec, report: WorkerReport) -> RunResult:
    """One load worker's run as a result; a load that had errors or lost messages is
    no baseline to compare against."""
    result = build_result(spec, started_at="", workers=[report.sends],
                          recorders={"loadgen/0": report.recorder}, processes=[],
                          brokers={}, environment={}, notes=[])  # fmt: skip
    if result.errors or result.completed != result.sent:
        raise SystemExit(f"hopbench's load had errors: {result.errors}, {result.notes}")
    return result


async def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian package)")
    topology = one_hop("http")
    load = LoadSpec(rate=1, duration_s=SECONDS, warmup_s=1, payload_bytes=100,
                    concurrency=CONNECTIONS)  # fmt: skip
    spec = RunSpec(run_id="capacity", topology=topology.to_dict(), load=load,
                   endpoints=allocate_endpoints(topology))  # fmt: skip
    # the service's schedule is an hour long, so that wrk's body, stamped now, stays
    # one its admission takes (hopbench.transports.admission) for every round
    serve = spec.model_copy(update={"load": load.model_copy(update={"duration_s": 3600})})
    now = time.monotonic_ns()
    body = Envelope(run_id=spec.run_id, flow=topology.name, intended_ns=now, sent_ns=now,
                    payload=b"x" * 100).SerializeToString()  # fmt: skip
    address = spec.endpoints["http"]["echo"][0]
    with tempfile.TemporaryDirectory(prefix="hopbench-bench-") as tmp:
        spec_path, script = Path(tmp) / "spec.json", Path(tmp) / "post.lua"
        spec.write(spec_path)
        serve.write(Path(tmp) / "serve.json")
        script.write_text(lua_body(body))
        service = await Child.spawn(
            "echo/0", "hopbench.services",
            ["--service", "echo", "--replica", "0", "--spec", str(Path(tmp) / "serve.json")],
            Path(tmp) / "echo.log",
        )  # fmt: skip
        try:
            await service.expect(Ready, 30)
            wrk_rates, hop_rates = [], []
            for _ in range(ROUNDS):
                wrk_rates.append(await wrk(f"http://{address}/edges/0", script))
                hop_rates.append(await hopbench_load(spec_path, spec, Path(tmp) / "lg.log"))
        finally:
            await service.kill()
    ratio = statistics.median(hop_rates) / statistics.median(wrk_rates)
    write_section(
        "Generator capacity (HTTP, against wrk)",
        f"""
The bundled HTTP service (FastAPI on uvicorn, one process, `cpu_us: 0`) driven flat out
with {CONNECTIONS} requests in flight for {SECONDS} s, alternating, {ROUNDS} rounds each.

| generator | requests/s, each round |
|---|---|
| wrk -t1 -c{CONNECTIONS} | {", ".join(f"{r:,.0f}" for r in wrk_rates)} |
| hopbench, closed loop, {CONNECTIONS} users | {", ".join(f"{r:,.0f}" for r in hop_rates)} |

Ratio hopbench / wrk (medians): **{ratio:.2f}** (aim >= 0.9).
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
