"""How a run's reports become one result: every process's recorder merged exactly,
the counts, the notes that say what limited the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hopbench.config.runspec import RunSpec
from hopbench.config.settings import client_library
from hopbench.config.topology import Topology
from hopbench.measure.breakdown import PARTS
from hopbench.measure.histogram import mean as histogram_mean
from hopbench.measure.histogram import new_histogram
from hopbench.measure.lateness import Lateness
from hopbench.measure.merge import RouteTotals, SendSummary, histogram_from, merge, summarize
from hopbench.measure.series import merge_series
from hopbench.measure.usage import Usage
from hopbench.results.caches import cache_results
from hopbench.results.sampled import LateSends
from hopbench.results.schema import (
    SEND_LAG_P99_LIMIT_US,
    Breakdown,
    EdgeResult,
    FaultEvent,
    HopResult,
    HopShare,
    Percentiles,
    ProcessResult,
    RouteResult,
    RunResult,
    TimePoint,
    Warmup,
    short_of,
)
from hopbench.results.status import count_notes, judge
from hopbench.results.wire import wire_result


@dataclass(frozen=True)
class Costs:
    """A process's usage at four moments: ready, the measured window's start and end,
    and the end of the run. Any may be unknown (None): what depends on it is then
    not measured, never zero."""

    ready: Usage | None = None
    window_start: Usage | None = None
    window_end: Usage | None = None
    end: Usage | None = None


def _cpu(start: Usage | None, end: Usage | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(end.cpu_s - start.cpu_s, 0.0), 3)


def process_result(
    name: str,
    costs: Costs,
    host: str = "local",
    clock: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
    first_error: str | None = None,
    first_error_s: float | None = None,
    wire: dict[str, dict[str, int]] | None = None,
    first_rejected: str | None = None,
    **counts: Any,
) -> ProcessResult:
    """A process's row: its CPU inside the measured window and over the run."""
    last = costs.end or costs.window_end
    return ProcessResult(
        name=name,
        cpu_s=_cpu(costs.window_start, costs.window_end),
        cpu_run_s=_cpu(costs.ready, costs.end),
        peak_rss_mb=round(last.peak_rss_mb if last else 0.0, 1),
        host=host,
        clock=clock,
        machine=machine,
        first_error=first_error,
        first_error_s=first_error_s,
        wire=wire or {},
        first_rejected=first_rejected,
        **counts,
    )


def cpu_ms_per_1000(processes: list[ProcessResult], messages: float) -> float | None:
    """CPU of every process inside the measured window per 1,000 messages of it; None
    when a process's CPU was not measured (a partial sum would flatter the run)."""
    cpus = [p.cpu_s for p in processes]
    if not cpus or messages <= 0 or any(c is None for c in cpus):
        return None
    return round(sum(c for c in cpus if c is not None) * 1e6 / messages, 1)


def build_result(
    spec: RunSpec,
    *,
    started_at: str,
    workers: list[SendSummary],
    recorders: dict[str, dict[str, Any]],
    processes: list[ProcessResult],
    brokers: dict[str, Any],
    environment: dict[str, Any],
    notes: list[str],
    faults: list[FaultEvent] | None = None,
    caches: dict[str, dict[str, Any]] | None = None,
) -> RunResult:
    """workers: what each load worker sent; recorders: process name -> Recorder JSON;
    caches: process name -> CacheStats JSON."""
    topology = spec.resolved
    load = spec.load
    sent, routes = merge(topology, workers, recorders)
    latency, service_time, send_lag = new_histogram(), new_histogram(), new_histogram()
    for route in routes:
        latency.add(route.latency)
        service_time.add(route.service_time)
    lateness = Lateness()
    for w in workers:
        send_lag.add(histogram_from(w.send_lag))
        lateness.add(w.lateness)

    measure_start = min((w.measure_start_ns for w in workers), default=0)
    last_sent = max((w.last_sent_ns for w in workers), default=0)
    gap_s = 0.0 if load.closed else 1 / load.rate
    elapsed_s = max(load.duration_s, (last_sent - measure_start) / 1e9 + gap_s)
    achieved = sent.sent / elapsed_s
    completed = sum(r.completed for r in routes)
    lag = summarize(send_lag)
    # A closed loop has no schedule to keep: its rate is whatever the system allows.
    # Sends held back at the explicit in-flight limit are the system pushing back,
    # not the generator falling short: that is reported on its own.
    in_flight_waits = sum(w.in_flight_waits for w in workers)
    unsent = sum(w.unsent for w in workers)
    generator_limited = not load.closed and (
        unsent > 0
        or (
            in_flight_waits == 0
            and (
                lag["p99"] > SEND_LAG_P99_LIMIT_US or short_of(achieved, load.rate, load.duration_s)
            )
        )
    )
    notes = list(notes)
    if in_flight_waits:
        notes.append(
            f"sends waited {in_flight_waits} times at the in-flight limit "
            f"({load.max_in_flight} per worker): the system pushed back; latency still "
            "counts from the intended send"
        )
    if unsent:
        notes.append(f"{unsent} messages due in the schedule were never sent")
    if generator_limited:
        notes.append(
            f"the load generator's sends fell behind: send lag p99 {lag['p99']:.0f} µs, "
            f"achieved {achieved:.0f}/s of {load.rate:.0f}/s"
        )
    series = list(recorders.values())
    timeline = [TimePoint(**row) for row in merge_series([r["series"] for r in series])]
    # Throughput is what completed inside the measured window: past capacity an open
    # loop still completes everything eventually, during the grace period.
    in_window = sum(p.completed for p in timeline if 0 <= p.t_s < load.duration_s)
    window_messages = in_window / max(len(routes), 1)  # completed on every route
    completion_rate = round(window_messages / load.duration_s, 1)
    rejected = sum(p.rejected for p in processes)
    if rejected:
        notes.append(rejected_note(rejected, processes))

    result = RunResult(
        run_id=spec.run_id,
        topology=topology.name,
        source=topology.source,
        mode=topology.mode_label,
        variant="+".join(dict.fromkeys(e.mode for e in topology.edges)),
        edges=[
            EdgeResult(
                name=e.name,
                mode=e.mode,
                pattern=e.pattern,
                settings=dict(e.settings),
                client=client_library(e.mode, spec.for_edge(e)),
                wire=wire_result(spec.for_edge(e), [p.wire.get(e.name, {}) for p in processes]),
            )
            for e in topology.edges
        ],
        replicas={name: svc.replicas for name, svc in topology.services.items()},
        started_at=started_at,
        target_rate=load.rate,
        achieved_rate=round(achieved, 1),
        completion_rate=completion_rate,
        duration_s=load.duration_s,
        warmup_s=load.warmup_s,
        payload_bytes=load.payload_bytes,
        workers=load.workers,
        load=load.model_dump(mode="json"),
        sent=sent.sent,
        expected=sum(r.expected for r in routes),
        completed=completed,
        errors=sent.errors + sum(p.errors for p in processes),
        lost=sum(r.lost for r in routes),
        duplicated=sum(r.duplicated for r in routes),
        negative_latencies=sum(r.negative for r in routes),
        out_of_range=sum(r.out_of_range for r in routes),
        out_of_order=sum(r.out_of_order for r in routes),
        late=sum(r.late for r in routes),
        late_replies=sum(p.late_replies for p in processes),
        rejected=rejected,
        in_flight_waits=in_flight_waits,
        unsent=unsent,
        warmup=Warmup(
            sent=sent.warmup_sent,
            errors=sent.warmup_errors,
            expected=sum(r.warmup_expected for r in routes),
            lost=sum(r.warmup_lost for r in routes),
        ),
        latency_us=Percentiles(**summarize(latency)),
        service_time_us=Percentiles(**summarize(service_time)),
        send_lag_us=Percentiles(**lag),
        late_sends=None if load.closed else _late_sends(lateness),
        generator_limited=generator_limited,
        caches=cache_results(topology, caches or {}),
        routes=[
            RouteResult(
                route=r.label,
                measures=topology.route_measures(r.route),
                recorded_by=sorted(r.recorders),
                expected=r.expected,
                completed=r.completed,
                lost=r.lost,
                duplicated=r.duplicated,
                out_of_order=r.out_of_order,
                late=r.late,
                latency_us=Percentiles(**summarize(r.latency)),
                hops=[_hop(name, r) for name in _hop_order(topology, r)],
                breakdown=_breakdown(r, _hop_order(topology, r)),
            )
            for r in routes
        ],
        processes=processes,
        timeline=timeline,
        histograms={
            "latency": latency.encode().decode("ascii"),
            "service_time": service_time.encode().decode("ascii"),
            "send_lag": send_lag.encode().decode("ascii"),
        },
        brokers=brokers,
        settings=spec.settings.model_dump(mode="json"),
        environment=environment,
        notes=notes,
        faults=sorted(faults or [], key=lambda f: f.t_s),
        cpu_ms_per_1000=cpu_ms_per_1000(processes, window_messages),
    )
    result.notes += count_notes(result)
    judge(result)
    return result


def rejected_note(rejected: int, processes: list[ProcessResult]) -> str:
    """What was rejected, by whom, and the first reason: the run's counts exclude it."""
    by = ", ".join(f"{p.name} {p.rejected}" for p in processes if p.rejected)
    first = next((p.first_rejected for p in processes if p.first_rejected), None)
    return (
        f"{rejected} message(s) received were rejected ({by}): undecodable, of another "
        "run, or impossible for this run's schedule; never recorded, dead-lettered where a "
        "broker carried them (docs/results.md)" + (f"; the first: {first}" if first else "")
    )


def _hop_order(topology: Topology, route: RouteTotals) -> list[str]:
    """The route's services in order, then any calls its recorder made (by first seen)."""
    names = [n for n in topology.hop_services(route.route) if n in route.hops]
    return names + [n for n in route.hops if n not in names]


def _late_sends(found: Lateness) -> LateSends:
    return LateSends(
        sends=found.sends,
        behind_us=round(found.behind_ns / 1000, 1),
        waited_us=round(found.waited_ns / 1000, 1) if found.run_delay_read else None,
        gc_us=round(found.gc_ns / 1000, 1),
    )


def _hop(name: str, route: RouteTotals) -> HopResult:
    transit, wait, work, rest = (Percentiles(**summarize(h)) for h in route.hops[name].parts)
    return HopResult(service=name, transit_us=transit, wait_us=wait, work_us=work, rest_us=rest)


def _breakdown(route: RouteTotals, names: list[str]) -> Breakdown | None:
    """Each part's share of the mean from exact sums (ns) over the decomposed completions."""
    count = route.decomposed
    if count == 0:
        return None
    shares = []
    for name in names:
        hop = route.hops[name]
        means = {part: ns / count / 1000 for part, ns in zip(PARTS, hop.path_ns, strict=True)}
        shares.append(
            HopShare(
                service=name,
                **{f"{part}_us": round(mean, 1) for part, mean in means.items()},
                on_path=round(hop.on_path / count, 3),
            )
        )
    send_lag = route.send_lag_ns / count / 1000
    mean = histogram_mean(route.latency)
    explained = send_lag + sum(sum(hop.path_ns) for hop in route.hops.values()) / count / 1000
    return Breakdown(
        completions=count,
        latency_mean_us=round(mean, 1),
        send_lag_us=round(send_lag, 1),
        hops=shares,
        residual_us=round(mean - explained, 1) or 0.0,  # never -0.0
    )
