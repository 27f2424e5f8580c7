"""The generator's self-check: when an open loop's sends fell behind their schedule
(``generator_limited``: send lag p99 over 1 ms, a rate short of the target, or
messages never sent), was the load generator the limit, or the host it shares?

The rules (docs/measurement.md, "Was it the generator?"):

- **generator**: a load worker was at saturation over the measured window: ≥ 90 % of
  a core, or its event loop never went to sleep (under 5 times a second at ≥ 20 % of
  a core);
- otherwise, from the late sends themselves (``late_sends``: the time the loops were
  over 1 ms behind, split at every send by the loop thread's run delay and the
  process's garbage collection):
  - **host** when the loop was runnable, waiting for a CPU, for ≥ 50 % of that time:
    the sends were late for want of a CPU the system under test was using too;
  - **generator** otherwise: garbage collection, or the loop's own work, named with
    their shares;
- without that split (no schedstat, older results), from the once-a-second samples:
  **host** when a load worker's main thread waited for a CPU ≥ 5 % of the time, the
  host's CPUs were ≥ 90 % busy, more tasks were runnable than it has cores, or some
  task waited for a CPU ≥ 10 % of the time (PSI); **generator** otherwise;
- **unknown** when the run has no samples.

Only a generator cause is flagged ``!`` in the tables; a host cause is flagged ``~``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hopbench.results.bottleneck import BUSY_FLOOR, NEVER_SLEPT_PER_S, SATURATED
from hopbench.results.sampled import GeneratorLimit, LateSends, ProcessSeries, Samples
from hopbench.results.schema import RunResult

WAITED = 0.05  # of the time: a load worker's loop this often runnable but not running
PRESSURE_PCT = 10.0  # PSI some avg10: some task waited for a CPU this share of the time
LATE_WAITED = 0.5  # of the late sends' time behind: the loop waiting for a CPU
LOADGEN_PREFIX = "loadgen/"


def generator_check(run: RunResult) -> GeneratorLimit | None:
    """Why the generator fell behind, with the figures; None when it did not."""
    if not run.generator_limited:
        return None
    samples = run.samples
    if samples is None:
        return GeneratorLimit(
            cause="unknown", detail="the run was not sampled: the cause was not measured"
        )
    watch = [i for i, t in enumerate(samples.t_s) if 0 <= t <= run.duration_s + 0.5]
    workers = [p for p in samples.processes if p.name.startswith(LOADGEN_PREFIX)]
    figures = _host(samples, watch)
    worst = max(workers, key=lambda p: _mean([p.cpu[i] for i in watch]) or 0.0, default=None)
    cpu = _mean([worst.cpu[i] for i in watch]) if worst else None
    waited = max((w for p in workers if (w := _waited(p, watch)) is not None), default=None)
    found = {"worker_cpu": cpu, "worker_waited": waited, **figures}
    why = next((s for p in workers if (s := _saturated(p, watch))), None)
    if why is not None:
        return GeneratorLimit(cause="generator", detail=f"the load generator: {why}", **found)
    host = _host_words(samples, figures)
    own = _worker_words(worst.name if worst else "the load worker", cpu, waited)
    late = _late(run.late_sends)
    if late is not None:
        late_waited, late_gc, words = late
        shares = {"late_waited": late_waited, "late_gc": late_gc}
        if late_waited >= LATE_WAITED:
            detail = f"the host, not the load generator: {words}; {host}; {own}"
            return GeneratorLimit(cause="host", detail=detail, **found, **shares)
        detail = f"the load generator, with CPU to spare: {words}; {own}; {host}"
        return GeneratorLimit(cause="generator", detail=detail, **found, **shares)
    crowded = _crowded(samples, figures, waited)
    if crowded:
        detail = f"the host, not the load generator: {crowded}; {host}; {own}"
        return GeneratorLimit(cause="host", detail=detail, **found)
    detail = f"the load generator, with CPU to spare: {own}; {host}"
    return GeneratorLimit(cause="generator", detail=detail, **found)


def _late(late: LateSends | None) -> tuple[float, float, str] | None:
    """The shares of the late sends' time behind spent waiting for a CPU and in garbage
    collection, and the split in words; None when it was not split (no run delay read)."""
    if late is None or late.waited_us is None or late.sends == 0 or late.behind_us <= 0:
        return None
    waited, gc = late.waited_us / late.behind_us, late.gc_us / late.behind_us
    words = (
        f"{late.sends} sends over 1 ms late, {late.behind_us / 1000:.1f} ms behind in all: "
        f"waiting for a CPU {_pct(waited)} of it (run delay), garbage collection "
        f"{_pct(gc)}, the loop's own work {_pct(max(0.0, 1 - waited - gc))}"
    )
    return waited, gc, words


def _host(samples: Samples, watch: Sequence[int]) -> dict[str, float | None]:
    pressure = _mean([samples.cpu_pressure[i] for i in watch])
    return {
        "host_cpu": _mean([samples.host_cpu[i] for i in watch]),
        "run_queue": _mean([float(samples.run_queue[i]) for i in watch]),
        "cpu_pressure": pressure,
    }


def _saturated(process: ProcessSeries, watch: Sequence[int]) -> str | None:
    cpu = _mean([process.cpu[i] for i in watch])
    if cpu is None:
        return None
    if cpu >= SATURATED:
        return f"{process.name} at {_pct(cpu)} of a core"
    sleeps = _mean([process.sleeps_per_s[i] for i in watch] if process.sleeps_per_s else [])
    if sleeps is not None and sleeps < NEVER_SLEPT_PER_S and cpu >= BUSY_FLOOR:
        return (
            f"{process.name}'s event loop never waited for work ({sleeps:.1f} sleeps/s) "
            f"at {_pct(cpu)} of a core"
        )
    return None


def _waited(process: ProcessSeries, watch: Sequence[int]) -> float | None:
    return _mean([process.waited[i] for i in watch] if process.waited else [])


def _crowded(samples: Samples, host: dict[str, float | None], waited: float | None) -> str:
    """Which sign of a crowded host was seen, in words; "" for none."""
    if waited is not None and waited >= WAITED:
        return f"its loop waited for a CPU {_pct(waited)} of the time (≥ {_pct(WAITED)})"
    busy, queue, pressure = host["host_cpu"], host["run_queue"], host["cpu_pressure"]
    if busy is not None and busy >= SATURATED:
        return f"the host's CPUs were {_pct(busy)} busy (≥ {_pct(SATURATED)})"
    if queue is not None and queue > samples.cores:
        return f"{queue:.1f} tasks were runnable on {samples.cores} cores"
    if pressure is not None and pressure >= PRESSURE_PCT:
        return f"some task waited for a CPU {pressure:.0f} % of the time (PSI)"
    return ""


def _host_words(samples: Samples, host: dict[str, float | None]) -> str:
    busy, queue, pressure = host["host_cpu"], host["run_queue"], host["cpu_pressure"]
    words = f"host {_pct(busy)} busy" if busy is not None else "host busy share not read"
    words += f", {queue:.1f} runnable on {samples.cores} cores" if queue is not None else ""
    return words + (f", CPU pressure {pressure:.0f} %" if pressure is not None else "")


def _worker_words(name: str, cpu: float | None, waited: float | None) -> str:
    words = f"{name} at {_pct(cpu)} of a core" if cpu is not None else f"{name}'s CPU not read"
    if waited is not None:
        words += f", waiting for a CPU {_pct(waited)} of the time"
    return words


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.0f} %"


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


def flag(run: RunResult) -> str:
    """The mark after a run's achieved rate: "!" the generator's own doing (or the
    cause is unknown), "~" the crowded host was, "" the sends kept their schedule."""
    if not run.generator_limited:
        return ""
    limit = run.generator_limit
    return "~" if limit is not None and limit.cause == "host" else "!"


def flag_legend(runs: Sequence[RunResult]) -> list[str]:
    """One line per mark that the runs show."""
    marks = {flag(r) for r in runs}
    lines = []
    if "!" in marks:
        lines.append(
            "! the load generator's sends fell behind by its own doing, not the system's: "
            "it was saturated, or late with CPU to spare (see notes)."
        )
    if "~" in marks:
        lines.append(
            "~ the host was busy: the load generator's sends fell behind while it waited for "
            "a CPU the system under test was using (see notes)."
        )
    return lines
