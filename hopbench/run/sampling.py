"""The sampling phase: once a second, from the start of the load until the sinks have
drained, where messages wait and what each process and the host spend.

Every tick reads, at one moment on the run's clock (t from the measured window's
start, the latency timeline's axis):

- every child's ``Sampled``: a service replica's messages in its handlers (on
  average over the last tick), and per out-edge the calls it sent and has no answer
  to yet; a load worker's calls on its
  entry edge and its backlog (due, not sent). A child that does not answer within
  0.8 of a tick (frozen, or too busy to read its pipe) leaves a None;
- the depth of every RabbitMQ queue of the run, and the lag of every Kafka consumer
  group (hopbench.brokers);
- the CPU and scheduler state of every local process from /proc (services, load
  workers, the embedded broker, a RabbitMQ server on this host, the orchestrator);
  an agent's CPU from its own answer;
- the host's CPU, run queue and CPU pressure.

The sampler's own CPU is counted (``sampler_cpu_s``) and held under 2 % of the run's
(bench/sampling.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from hopbench.brokers.kafka import LagReader
from hopbench.config.runspec import RunSpec
from hopbench.config.topology import LOADGEN, Edge
from hopbench.control.child import Child
from hopbench.errors import HopbenchError
from hopbench.measure.samplers import HostStat, ProcStat, cpu_share, host_stat, proc_stat
from hopbench.protocol.messages import Sample, Sampled
from hopbench.results.sampled import ProcessSeries, QueueKind, QueueSeries, Samples
from hopbench.run.fleet import Fleet
from hopbench.run.phases import Brokers, Window
from hopbench.transports import provisioning
from hopbench.transports.base import channel_of

INTERVAL_S = 1.0
# How long, as a share of the interval, a tick waits for the children's answers: a
# saturated service reads its pipe only between handlers, and its answer still counts.
ANSWER_WITHIN = 0.8


@dataclass
class _Queue:
    """A queue series while it fills: what it is, and one value per tick."""

    name: str
    kind: QueueKind
    holder: str
    waits_for: str
    edge: str = ""
    mode: str = ""
    values: list[float | None] = field(default_factory=list)
    note: str = ""

    def series(self) -> QueueSeries:
        return QueueSeries(**self.__dict__)


@dataclass
class _Process:
    pid: int | None
    cpu: list[float | None] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    sleeps: list[float | None] = field(default_factory=list)
    waited: list[float | None] = field(default_factory=list)
    # at the last tick that read it: monotonic ns, CPU seconds, sleeps, waited seconds
    last: tuple[int, float, int | None, float | None] | None = None

    def add(
        self,
        now_ns: int,
        cpu_s: float | None,
        state: str,
        sleeps: int | None,
        waited_s: float | None = None,
    ) -> None:
        share = per_s = waited = None
        if cpu_s is not None and self.last is not None:
            elapsed_s = (now_ns - self.last[0]) / 1e9
            share = round(cpu_share(self.last[1], cpu_s, elapsed_s), 3)
            before, waited_before = self.last[2], self.last[3]
            if sleeps is not None and before is not None:
                per_s = round((sleeps - before) / elapsed_s, 1)
            if waited_s is not None and waited_before is not None:
                waited = round(cpu_share(waited_before, waited_s, elapsed_s), 3)
        if cpu_s is not None:
            self.last = (now_ns, cpu_s, sleeps, waited_s)
        self.cpu.append(share)
        self.state.append(state)
        self.sleeps.append(per_s)
        self.waited.append(waited)

    def series(self, name: str) -> ProcessSeries:
        return ProcessSeries(
            name=name,
            pid=self.pid,
            cpu=self.cpu,
            state=self.state,
            sleeps_per_s=self.sleeps,
            waited=self.waited,
        )


class Sampler:
    def __init__(
        self, fleet: Fleet, brokers: Brokers, spec: RunSpec, window: Window,
        interval_s: float = INTERVAL_S,
    ) -> None:  # fmt: skip
        self.children = fleet.children
        self.window = window
        self.interval_ns = int(interval_s * 1e9)
        self.rabbit = brokers.rabbit
        self.postgres = brokers.postgres
        self.notes: list[str] = []
        self.queues = _child_queues(spec, self.children)
        rabbit_queues = _rabbit_queues(spec) if brokers.rabbit is not None else {}
        self.rabbit_queues = {name: amqp for name, (_, amqp) in rabbit_queues.items()}
        self.kafka_groups, kafka_queues = _kafka_groups(spec, brokers)
        self.queues.update({name: q for name, (q, _) in rabbit_queues.items()} | kafka_queues)
        self.db_queues = _db_queues(brokers)
        self.queues.update({q.name: q for q in self.db_queues.values()})
        kafka = brokers.described.get("kafka", {})
        self.kafka_broker = f"{kafka.get('kind', 'Kafka')} {kafka.get('version', '')}".strip()
        self.lag = (
            LagReader(brokers.kafka.bootstrap, self.kafka_groups)
            if brokers.kafka is not None and self.kafka_groups
            else None
        )
        self.processes = {c.name: _Process(c.proc.pid if c.proc else None) for c in self.children}
        self.processes.update(_broker_processes(brokers))
        self.processes["orchestrator"] = _Process(os.getpid())
        self.t_s: list[float] = []
        self.host_cpu: list[float | None] = []
        self.run_queue: list[int] = []
        self.pressure: list[float | None] = []
        self._host: HostStat | None = None
        self.sampler_cpu_s = 0.0
        self.lag_error: str | None = None  # why the lag reader could not start
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.lag is not None:
            try:
                await self.lag.start()
            except HopbenchError as exc:
                self.lag_error = str(exc)
                self.lag = None
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> Samples:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.lag is not None:
            await self.lag.close()
        return self.samples()

    async def _loop(self) -> None:
        origin = self.window.origin_ns
        k = (self.window.start_ns - origin) // self.interval_ns
        while True:
            now = time.monotonic_ns()
            k = max(k, -((origin - now) // self.interval_ns))  # the next tick not yet past
            await asyncio.sleep((origin + k * self.interval_ns - now) / 1e9)
            await self.tick(k)
            k += 1

    async def tick(self, k: int) -> None:
        cpu0 = time.process_time()
        now = time.monotonic_ns()
        host = host_stat()
        local = {n: proc_stat(p.pid) for n, p in self.processes.items() if p.pid is not None}
        replies, depths, lags, active = await asyncio.gather(
            asyncio.gather(
                *(_ask(c, k, ANSWER_WITHIN * self.interval_ns / 1e9) for c in self.children)
            ),
            self._depths(),
            self._lags(),
            self._db_active(),
        )
        self._record_host(now, host)
        self._record_processes(now, local, dict(zip(self.children, replies, strict=True)))
        for child, reply in zip(self.children, replies, strict=True):
            self._record_child(child, reply)
        for name, value in (depths | lags | active).items():
            self.queues[name].values.append(value)
        for queue in self.queues.values():  # not read this tick (a broker unreachable)
            if len(queue.values) < len(self.t_s):
                queue.values.append(None)
        self.sampler_cpu_s += time.process_time() - cpu0

    async def _depths(self) -> dict[str, int | None]:
        if self.rabbit is None or not self.rabbit_queues:
            return {}
        read = await self.rabbit.depths(list(self.rabbit_queues.values()))
        return {name: read[queue] for name, queue in self.rabbit_queues.items()}

    async def _db_active(self) -> dict[str, int | None]:
        if self.postgres is None or not self.db_queues:
            return {}
        read = await self.postgres.active()
        return {q.name: read.get(service) for service, q in self.db_queues.items()}

    async def _lags(self) -> dict[str, int | None]:
        if self.lag is None:
            return {}
        read = await self.lag.read()
        return {f"kafka group {group}": value for group, value in read.items()}

    def _record_host(self, now_ns: int, host: HostStat) -> None:
        self.t_s.append(round((now_ns - self.window.origin_ns) / 1e9, 3))
        before = self._host
        busy = None
        if before is not None and host.total_s > before.total_s:
            busy = round((host.busy_s - before.busy_s) / (host.total_s - before.total_s), 3)
        self._host = host
        self.host_cpu.append(busy)
        self.run_queue.append(max(host.runnable - 1, 0))  # less the sampler, running now
        self.pressure.append(host.cpu_pressure)

    def _record_processes(
        self,
        now_ns: int,
        local: Mapping[str, ProcStat | None],
        replies: Mapping[Child, Sampled | None],
    ) -> None:
        remote = {c.name: r for c, r in replies.items() if c.proc is None}
        for name, process in self.processes.items():
            if process.pid is not None:
                stat = local.get(name)
                if stat is None:
                    process.add(now_ns, None, "?", None)
                else:
                    process.add(now_ns, stat.cpu_s, stat.state, stat.sleeps, stat.waited_s)
            else:
                reply = remote.get(name)
                process.add(now_ns, reply.cpu_s if reply else None, "?", None)

    def _record_child(self, child: Child, reply: Sampled | None) -> None:
        for queue in self.queues.values():
            if queue.holder != child.name:
                continue
            if reply is None:
                queue.values.append(None)
            elif queue.kind == "handling":
                queue.values.append(round(reply.held, 2))
            elif queue.kind == "backlog":
                queue.values.append(reply.backlog)
            elif queue.kind == "db_waiting":
                queue.values.append(reply.db_waiting)
            else:
                queue.values.append(reply.calls.get(queue.edge))

    def samples(self) -> Samples:
        notes = [*self.notes, *self._lag_notes()]  # first: it notes the series too
        return Samples(
            interval_s=self.interval_ns / 1e9,
            t_s=self.t_s,
            cores=os.cpu_count() or 1,
            host_cpu=self.host_cpu,
            run_queue=self.run_queue,
            cpu_pressure=self.pressure,
            queues=[q.series() for q in self.queues.values()],
            processes=[p.series(name) for name, p in self.processes.items()],
            sampler_cpu_s=round(self.sampler_cpu_s, 4),
            notes=notes,
        )

    def _lag_notes(self) -> list[str]:
        """Say why a group's lag is missing, where it is (never a silent 0)."""
        why = self.lag.error if self.lag is not None else self.lag_error
        notes = []
        for queue in self.queues.values():
            if queue.kind == "consumer_lag" and any(v is None for v in queue.values):
                queue.note = f"{self.kafka_broker} did not answer: {why}" if why else "not read"
                notes.append(f"{queue.name}: lag missing in some samples ({queue.note})")
        return notes


async def _ask(child: Child, k: int, timeout_s: float) -> Sampled | None:
    """The child's answer to sample k; None if it has none within timeout_s (an
    answer to an earlier sample, come late, is skipped)."""
    child.send(Sample(k=k))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            reply = await child.expect(Sampled, left)
        except HopbenchError:
            return None
        if reply.k == k:
            return reply
    return None


def _child_queues(spec: RunSpec, children: list[Child]) -> dict[str, _Queue]:
    """Per service replica: its handlers, and its calls per out-edge; per load worker:
    its calls on the entry edge, and its backlog."""
    topology = spec.resolved
    queues: dict[str, _Queue] = {}
    for child in children:
        service = child.name.split("/")[0]
        if service == LOADGEN:
            outs = [topology.entry_edge]
            backlog = _Queue(f"{child.name} backlog", "backlog", child.name, LOADGEN)
            queues[backlog.name] = backlog
        else:
            outs = list(topology.out_edges(service))
            handling = _Queue(f"{child.name} handling", "handling", child.name, service)
            queues[handling.name] = handling
            if topology.services[service].db is not None:
                name = f"{child.name} -> postgresql (pool)"
                queues[name] = _Queue(name, "db_waiting", child.name, service, mode="postgresql")
        # publish-subscribe edges of one source share one publish (ServiceRuntime),
        # counted under the first of them
        channels: dict[str, list[Edge]] = {}
        for edge in outs:
            channels.setdefault(edge.name if edge.is_sync else channel_of(edge), []).append(edge)
        for shared in channels.values():
            edge = shared[0]
            name = f"{child.name} -> {','.join(e.target for e in shared)} ({edge.mode})"
            queues[name] = _Queue(name, "calls", child.name, edge.target, edge.name, edge.mode)
    return queues


def _rabbit_queues(spec: RunSpec) -> dict[str, tuple[_Queue, str]]:
    """Every RabbitMQ queue of the run, with its name on the broker."""
    from hopbench.transports.rabbitmq import queue_name

    queues = {}
    for edge in spec.resolved.edges:
        if edge.mode == "rabbitmq":
            amqp = queue_name(spec.run_id, edge)
            name = f"rabbitmq {amqp}"
            queue = _Queue(name, "broker_queue", "rabbitmq", edge.target, edge.name, edge.mode)
            queues[name] = (queue, amqp)
    return queues


def _kafka_groups(
    spec: RunSpec, brokers: Brokers
) -> tuple[dict[str, dict[str, int]], dict[str, _Queue]]:
    """Every Kafka consumer group of the run: its topics and their partitions."""
    if brokers.kafka is None:
        return {}, {}
    from hopbench.transports.kafka import group_name, topic_name

    partitions = provisioning(spec).kafka_topics
    groups: dict[str, dict[str, int]] = {}
    queues: dict[str, _Queue] = {}
    for edge in spec.resolved.edges:
        if edge.mode != "kafka":
            continue
        group, topic = group_name(spec.run_id, edge), topic_name(spec.run_id, edge)
        groups.setdefault(group, {})[topic] = partitions[topic]
        name = f"kafka group {group}"
        queues[name] = _Queue(name, "consumer_lag", "kafka", edge.target, edge.name, edge.mode)
    return groups, queues


def _db_queues(brokers: Brokers) -> dict[str, _Queue]:
    """Per database service: the run's queries its server is running (pg_stat_activity)."""
    if brokers.postgres is None:
        return {}
    return {
        service: _Queue(
            f"postgresql {table}", "db_active", "postgresql", service, mode="postgresql"
        )
        for service, table in brokers.postgres.tables.items()
    }


def _broker_processes(brokers: Brokers) -> dict[str, _Process]:
    """The brokers' OS processes on this host, as the run found them
    (Brokers.find_servers): the embedded Kafka, a local broker server."""
    return {name: _Process(s.pid) for name, s in brokers.servers.items() if s.pid is not None}
