"""The bottleneck of a run that did not keep up: the queue that grew first, and the
resource at saturation, named from the run's per-second samples.

The rules (docs/measurement.md, "The bottleneck"):

- **Growing.** Over the measured window (0 ≤ t ≤ duration), a queue grows when the
  Theil-Sen slope of its samples (scipy; robust to one odd sample, as a late tick
  is) is at least ``max(1/s, 2 % of the target rate)`` and it rose by at least 5
  messages. It grew *from* the last sample before it first stood 10 % of its rise
  above its low point, at the rate of the rise from there to 90 % of it (a queue
  held at a limit rises, then stays: its rate is the rise's).
- **First.** The growing queue with the earliest start; within one sample interval,
  the one furthest from the load generator (a stalled service makes every queue
  upstream of it grow in the same second: the deepest is the cause).
- **Saturated**, in this order, for the service the queue waits for: one of its
  replicas stopped (scheduler state T, as under SIGSTOP); CPU-bound (≥ 90 % of one
  core, the most a single-threaded Python process gets; or, on a crowded host that
  gives it less, its main thread never went to sleep, under 5 times a second at
  ≥ 20 % of a core: its event loop always had work waiting); at its concurrency
  limit (a broker consumer holding ``prefetch``
  messages); then any process of the run at ≥ 90 % of a core (a broker, a load
  worker); then the host (CPUs ≥ 90 % busy, or more runnable tasks than cores).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

from hopbench.results.sampled import (
    Bottleneck,
    Growth,
    ProcessSeries,
    QueueSeries,
    Samples,
    Saturation,
)
from hopbench.results.schema import RunResult

MIN_SLOPE_PER_S = 1.0
MIN_SLOPE_SHARE = 0.02  # of the target rate
MIN_RISE = 5.0
RISEN = 0.1  # of the rise: above this, the queue has started to grow
SATURATED = 0.9  # of one core; of the host's CPUs
NEVER_SLEPT_PER_S = 5.0  # fewer sleeps a second than this: its loop never ran dry
BUSY_FLOOR = 0.2  # of one core: below this, a process that never sleeps is not busy
_KIND_ORDER = {
    "broker_queue": 0, "consumer_lag": 0, "db_active": 0, "db_waiting": 1, "handling": 1,
    "calls": 2, "backlog": 3,
}  # fmt: skip
_MODES = {"http": "HTTP", "grpc": "gRPC", "kafka": "Kafka", "rabbitmq": "RabbitMQ"}


def find_bottleneck(run: RunResult, reason: str) -> Bottleneck | None:
    """What limited a run that did not keep up (None: the run has no samples)."""
    samples = run.samples
    if samples is None:
        return None
    window = [i for i, t in enumerate(samples.t_s) if 0 <= t <= run.duration_s + 0.5]
    threshold = max(MIN_SLOPE_PER_S, MIN_SLOPE_SHARE * run.target_rate)
    found = [g for q in samples.queues if (g := growth(q, samples.t_s, window, threshold))]
    queue = first(found, depths(run), samples.interval_s)
    since = queue.from_t_s if queue is not None else 0.0
    watch = [i for i in window if samples.t_s[i] >= since] or window
    resource = saturation(run, samples, queue, watch)
    return Bottleneck(reason=reason, queue=queue, resource=resource, text=words(queue, resource))


def growth(
    queue: QueueSeries, t_s: Sequence[float], window: Sequence[int], threshold: float
) -> Growth | None:
    """How the queue grew over the window, or None if it did not grow."""
    from scipy.stats import theilslopes

    points = [(t_s[i], v) for i in window if (v := queue.values[i]) is not None]
    if len(points) < 3:
        return None
    times, values = [p[0] for p in points], [p[1] for p in points]
    slope = float(theilslopes(values, times).slope)
    peak_at = max(range(len(values)), key=values.__getitem__)
    low = min(values[: peak_at + 1])
    rise = values[peak_at] - low
    if slope < threshold or rise < MIN_RISE:
        return None
    # it rose from the last sample before the first one clearly above the low point
    risen = next(i for i in range(peak_at + 1) if values[i] > low + RISEN * rise)
    from_at = max(risen - 1, 0)
    top = next(i for i in range(risen, peak_at + 1) if values[i] >= low + (1 - RISEN) * rise)
    return Growth(
        queue=queue.name,
        kind=queue.kind,
        holder=queue.holder,
        waits_for=queue.waits_for,
        edge=queue.edge,
        mode=queue.mode,
        per_s=round((values[top] - values[from_at]) / (times[top] - times[from_at]), 1),
        from_t_s=round(times[from_at], 1),
        peak=values[peak_at],
    )


def depths(run: RunResult) -> dict[str, int]:
    """Each service's distance in edges from the load generator."""
    graph: dict[str, list[str]] = {}
    for edge in run.edges:
        source, _, target = edge.name.partition("->")
        graph.setdefault(source, []).append(target)
    depth = {"loadgen": 0}
    todo = deque(["loadgen"])
    while todo:
        name = todo.popleft()
        for target in graph.get(name, []):
            if target not in depth:
                depth[target] = depth[name] + 1
                todo.append(target)
    return depth


def first(found: list[Growth], depth: dict[str, int], interval_s: float) -> Growth | None:
    """The queue that grew first; of those that started together, the deepest."""
    if not found:
        return None
    start = min(g.from_t_s for g in found)
    together = [g for g in found if g.from_t_s <= start + interval_s]
    return max(
        together,
        key=lambda g: (depth.get(g.waits_for, 0), -_KIND_ORDER[g.kind], g.per_s),
    )


def saturation(
    run: RunResult, samples: Samples, queue: Growth | None, watch: Sequence[int]
) -> Saturation:
    """The resource that ran out while the queue grew (the rules above, in order)."""
    host_busy = _mean([samples.host_cpu[i] for i in watch])
    service = queue.waits_for if queue is not None else None
    replicas = [p for p in samples.processes if service and p.name.split("/")[0] == service]
    for check in (_stopped, _cpu_bound):
        for process in replicas:
            found = check(process, samples, watch, host_busy)
            if found is not None:
                return found
    limited = _at_limit(run, samples, queue, watch)
    if limited is not None:
        return limited
    busiest = _busiest(samples, watch)
    if busiest is not None:
        return busiest
    run_queue = _mean([float(samples.run_queue[i]) for i in watch]) or 0.0
    if (host_busy or 0.0) >= SATURATED or run_queue > samples.cores:
        detail = (
            f"the host's CPUs: {_pct(host_busy or 0.0)} of {samples.cores} cores busy, "
            f"{run_queue:.1f} tasks runnable on average"
        )
        return Saturation(kind="host_cpu", name="host", cpu=host_busy, detail=detail)
    return Saturation(kind="none", name="", detail="no process, and not the host, at saturation")


def _busiest(samples: Samples, watch: Sequence[int]) -> Saturation | None:
    """Any process of the run at saturation: a broker, a load worker, the orchestrator."""
    by_cpu = [(cpu, p.name) for p in samples.processes if (cpu := _mean([p.cpu[i] for i in watch]))]
    if not by_cpu:
        return None
    cpu, name = max(by_cpu)
    if cpu < SATURATED:
        return None
    return Saturation(kind="cpu", name=name, cpu=cpu, detail=_at_cpu(name, cpu))


def _stopped(
    process: ProcessSeries, samples: Samples, watch: Sequence[int], host_busy: float | None
) -> Saturation | None:
    stopped = [samples.t_s[i] for i in watch if process.state[i] == "T"]
    if not stopped:
        return None
    cpu = _mean([process.cpu[i] for i in watch])
    detail = (
        f"{process.name} stopped (state T) at t={round(stopped[0], 1):g} s, {_pct(cpu or 0.0)} CPU"
    )
    return Saturation(kind="stopped", name=process.name, cpu=cpu, detail=detail)


def _cpu_bound(
    process: ProcessSeries, samples: Samples, watch: Sequence[int], host_busy: float | None
) -> Saturation | None:
    cpu = _mean([process.cpu[i] for i in watch])
    if cpu is None:
        return None
    if cpu >= SATURATED:
        return Saturation(kind="cpu", name=process.name, cpu=cpu, detail=_at_cpu(process.name, cpu))
    sleeps = _mean([process.sleeps_per_s[i] for i in watch] if process.sleeps_per_s else [])
    if sleeps is not None and sleeps < NEVER_SLEPT_PER_S and cpu >= BUSY_FLOOR:
        detail = (
            f"{process.name} CPU-bound: it never waited for work ({sleeps:.1f} sleeps/s), "
            f"at {_pct(cpu)} of a core while the host's CPUs were {_pct(host_busy or 0.0)} busy"
        )
        return Saturation(kind="cpu", name=process.name, cpu=cpu, detail=detail)
    return None


def _at_limit(
    run: RunResult, samples: Samples, queue: Growth | None, watch: Sequence[int]
) -> Saturation | None:
    """A broker consumer holding its prefetch: its concurrency, not its CPU, is the limit."""
    if queue is None or queue.kind not in ("broker_queue", "consumer_lag"):
        return None
    limit = _prefetch(run, queue.edge)
    for series in samples.queues:
        if series.kind != "handling" or series.waits_for != queue.waits_for:
            continue
        held = [v for i in watch if (v := series.values[i]) is not None]
        if held and statistics.median(held) >= SATURATED * limit:
            process = next((p for p in samples.processes if p.name == series.holder), None)
            cpu = _mean([process.cpu[i] for i in watch]) if process is not None else None
            detail = (
                f"{series.holder} at its prefetch: {statistics.median(held):.3g} in flight "
                f"of {limit}, at {_pct(cpu or 0.0)} CPU"
            )
            return Saturation(kind="concurrency", name=series.holder, cpu=cpu, detail=detail)
    return None


def _prefetch(run: RunResult, edge_name: str) -> int:
    edge = next((e for e in run.edges if e.name == edge_name), None)
    own = edge.settings.get("prefetch") if edge is not None else None
    return int(own if own is not None else run.settings.get("prefetch", 100))


def words(queue: Growth | None, resource: Saturation) -> str:
    """Both in one line, e.g. "busy/0 at 99 % CPU; its HTTP in-flight ... grew ~100/s"."""
    if queue is None:
        return f"{resource.detail}; no queue grew measurably"
    mode = _MODES.get(queue.mode, queue.mode)
    ours = resource.name.split("/")[0] == queue.waits_for
    what = {
        "calls": (f"its {mode} in-flight (calls from {queue.holder})" if ours
                  else f"{queue.holder}'s {mode} in-flight to {queue.waits_for}"),
        "broker_queue": f"{mode} queue {queue.queue.split(' ', 1)[-1]} ({queue.edge})",
        "consumer_lag": f"{mode} lag of {queue.queue.split(' ')[-1]} ({queue.edge})",
        "handling": f"{queue.holder}'s messages in its handlers",
        "backlog": f"{queue.holder}'s backlog (due, not yet sent)",
        "db_waiting": f"{queue.holder}'s queries waiting for a database connection",
        "db_active": f"the queries PostgreSQL runs for {queue.waits_for}",
    }[queue.kind]  # fmt: skip
    return f"{resource.detail}; {what} grew ~{queue.per_s:,.0f}/s from t={queue.from_t_s:g} s"


def _at_cpu(name: str, cpu: float) -> str:
    return f"{name} at {_pct(cpu)} CPU"


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None
