"""What sampling costs: the same run without the sampler, with it once a second, and
with it 20 times a second.

For each mode, the chain (loadgen -> gateway -> worker) at a steady rate, the three
alternately, ROUNDS times each. A run's CPU is every process it started (services,
load workers, the embedded broker: their rows in the results) plus the
orchestrator's own CPU over the run. Two figures:

- direct: at 1/s, the orchestrator's CPU inside the sampling ticks
  (``sampler_cpu_s``, an upper bound: it includes whatever else the orchestrator did
  meanwhile) over the run's CPU;
- A/B: every cost, the children's answers and the brokers' included. One tick a
  second costs less than a loaded 2-core machine's run-to-run noise, so the A/B
  compares 20 ticks a second with none and divides the difference by 20.

The RabbitMQ server's CPU is left out: the local server is shared with whatever
else runs on the machine. Aim: under 2 %.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.common import write_section
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.schema import RunResult
from hopbench.run.orchestrator import RunRequest, run_topology

ROOT = Path(__file__).resolve().parent.parent
RATE, SECONDS, ROUNDS = 500, 10, 3
FAST = 20  # ticks a second in the A/B
MODES = ("http", "kafka", "rabbitmq")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(mode: str, interval_s: float | None) -> tuple[float, RunResult]:
    """(the run's CPU seconds, its result), sampled every interval_s (None: never)."""
    topology = load_topology(ROOT / "topologies" / "chain.yaml", mode=mode)
    load = LoadSpec(rate=RATE, duration_s=SECONDS, warmup_s=1, payload_bytes=100)
    with tempfile.TemporaryDirectory(prefix="hopbench-bench-") as out:
        before = _own_cpu_s()
        result = await run_topology(
            RunRequest(topology, load, Path(out), sample_interval_s=interval_s)
        )
        orchestrator = _own_cpu_s() - before
    # from ready to the end of the run; the shared local RabbitMQ server is left out
    ours = [p for p in result.processes if p.name != "rabbitmq-server"]
    return sum(p.cpu_run_s or 0.0 for p in ours) + orchestrator, result


async def main() -> None:
    modes = [m for m in sys.argv[1:] if m in MODES] or list(MODES)
    rows = []
    for mode in modes:
        without, once, fast, direct = [], [], [], []
        for _ in range(ROUNDS):
            without.append((await measure(mode, None))[0])
            cpu, result = await measure(mode, 1.0)
            assert result.samples is not None
            once.append(cpu)
            direct.append(result.samples.sampler_cpu_s / cpu)
            fast.append((await measure(mode, 1 / FAST))[0])
        ab = statistics.median((f / w - 1) / FAST for f, w in zip(fast, without, strict=True))
        rows.append(
            f"| {mode} | {statistics.median(without):.2f} | {statistics.median(once):.2f} "
            f"| {statistics.median(fast):.2f} | **{statistics.median(direct) * 100:.2f} %** "
            f"| **{ab * 100:.2f} %** |"
        )
        print(rows[-1], flush=True)
    write_section(
        "Cost of sampling",
        f"""
The chain (loadgen -> gateway -> worker) at {RATE}/s for {SECONDS} s (+1 s warm-up),
run without sampling, sampled once a second, and sampled {FAST} times a second,
alternately, {ROUNDS} rounds each; medians. A run's CPU: every process it started
(services, load workers, the embedded broker) plus the orchestrator. *Sampler*: at
1/s, the orchestrator's CPU inside the sampling ticks over the run's CPU (an upper
bound). *A/B per 1/s*: (run CPU at {FAST}/s ÷ run CPU without − 1) ÷ {FAST}: every cost,
the children's answers and the embedded broker's included. One tick a second is well
below this shared machine's run-to-run noise (about ±10 % between identical runs);
{FAST} a second make the cost {FAST} times larger, and the difference is divided back,
so the figure carries that noise ÷ {FAST}. The RabbitMQ server's CPU is left out (the
local server is shared). Aim: under 2 %.

| mode | run CPU-s, none | at 1/s | at {FAST}/s | sampler / run at 1/s | A/B per 1/s |
|---|---|---|---|---|---|
{chr(10).join(rows)}
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
