"""Faults applied during a run: each is a measured event, noted in the results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hopbench.brokers.tansu import TansuBroker
from hopbench.config.faults import Fault, Pause
from hopbench.control.child import Child
from hopbench.errors import ConfigError, HopbenchError
from hopbench.protocol.messages import Ready
from hopbench.results.schema import FaultEvent
from hopbench.run.fleet import Fleet
from hopbench.run.live import cancel
from hopbench.run.netproxy import LinkProxy

LINK_NAMES = {"rabbitmq": "RabbitMQ"}


def check_pauses(pauses: list[Pause], services: list[Child]) -> None:
    """Every pause names a local process of this run (agents cannot be paused)."""
    by_name = {c.name: c for c in services}
    for pause in pauses:
        if pause.target not in by_name:
            known = ", ".join(by_name)
            raise ConfigError(f"--pause {pause.target}: no such process; known: {known}")
        if by_name[pause.target].remote:
            raise ConfigError(
                f"--pause {pause.target}: it runs as an agent at "
                f"{by_name[pause.target].address}; only local processes can be paused"
            )


def start_pauses(
    pauses: list[Pause],
    services: list[Child],
    origin_ns: int,
    notes: list[str],
    stack: contextlib.AsyncExitStack,
) -> None:
    """Schedule every pause; the stack cancels them (and resumes the process) at the end."""
    check_pauses(pauses, services)
    by_name = {c.name: c for c in services}
    for pause in pauses:
        task = asyncio.create_task(_pause(by_name[pause.target], pause, origin_ns, notes))
        stack.push_async_callback(cancel, task)


async def _pause(child: Child, pause: Pause, origin_ns: int, notes: list[str]) -> None:
    assert child.proc is not None
    await asyncio.sleep(max(0, origin_ns - time.monotonic_ns()) / 1e9 + pause.at_s)
    child.proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(pause.for_s)
    finally:
        child.proc.send_signal(signal.SIGCONT)  # also when the run is cut short
    notes.append(f"{pause.target} was paused for {pause.for_s:g} s at t={pause.at_s:g} s")


@dataclass
class Faults:
    """The faults of one run as they happen: each is an event in the results (with its
    moment) and a note; the processes they killed are not failures of the run."""

    origin_ns: int  # t = 0: the measured window's start
    notes: list[str]
    events: list[FaultEvent] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)  # processes a fault killed on purpose
    restarted: dict[str, Ready] = field(default_factory=dict)  # new process -> its Ready

    def t_s(self) -> float:
        return round((time.monotonic_ns() - self.origin_ns) / 1e9, 3)

    def record(self, fault: Fault | None, target: str, what: str) -> None:
        t_s = self.t_s()
        self.events.append(FaultEvent(fault=fault.text if fault else "", target=target,
                                      t_s=t_s, what=what))  # fmt: skip
        self.notes.append(f"t={t_s:.2f} s: {what}" + (f" (--fault {fault.text})" if fault else ""))

    def why(self, target: str) -> str:
        """How a process a fault killed ended, for its row in the results."""
        event = next(e for e in self.events if e.target == target)
        return f"killed on purpose at t={event.t_s:.2f} s (--fault {event.fault})"

    async def until(self, at_s: float) -> None:
        await asyncio.sleep(max(0.0, self.origin_ns + at_s * 1e9 - time.monotonic_ns()) / 1e9)


def check_faults_runnable(faults: list[Fault], services: list[Child], tansu: bool) -> None:
    """Every replica a fault kills is a local process (an agent's process is not ours to
    signal), and a broker fault finds the embedded broker."""
    by_name = {c.name: c for c in services}
    for fault in faults:
        if fault.on_link:
            continue  # start_links checked it
        if fault.on_broker:
            if not tansu:
                raise ConfigError(f"--fault {fault.text}: this run has no embedded Kafka broker")
            continue
        child = by_name.get(fault.target)
        if child is None:
            raise ConfigError(f"--fault {fault.text}: no such process; known: {', '.join(by_name)}")
        if child.remote:
            raise ConfigError(
                f"--fault {fault.text}: {fault.target} runs as an agent at {child.address}; "
                "only local processes can be killed"
            )


def start_faults(
    faults: list[Fault],
    state: Faults,
    fleet: Fleet,
    tansu: TansuBroker | None,
    restart: Callable[[Child], Awaitable[Child]],
    reprovision: Callable[[], Awaitable[None]],
    stack: contextlib.AsyncExitStack,
    links: dict[str, LinkProxy] | None = None,
) -> None:
    """Schedule every fault, and watch the embedded broker: if it dies without being
    asked to, that is named too, with its moment. The stack cancels them at the end."""
    check_faults_runnable(faults, fleet.services, tansu is not None)
    by_name = {c.name: c for c in fleet.services}
    tasks = []
    for fault in faults:
        if fault.on_link:
            tasks.append(_link_fault(fault, state, (links or {})[fault.target]))
        elif fault.on_broker:
            assert tansu is not None
            tasks.append(_broker_fault(fault, state, tansu, reprovision))
        else:
            tasks.append(_kill(fault, state, by_name[fault.target], restart))
    if tansu is not None:
        tasks.append(_watch_broker(state, tansu))
    for coroutine in tasks:
        stack.push_async_callback(cancel, asyncio.create_task(coroutine))


async def _kill(
    fault: Fault, state: Faults, child: Child, restart: Callable[[Child], Awaitable[Child]]
) -> None:
    assert child.proc is not None
    await state.until(fault.at_s)
    pid = child.proc.pid
    state.killed.add(child.name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # its group: whatever it started dies with it
    await child.proc.wait()
    state.record(fault, child.name, f"{child.name} (pid {pid}) was killed with SIGKILL")
    if not fault.restart:
        return
    try:
        new = await restart(child)
    except HopbenchError as exc:
        state.record(fault, child.name, f"{child.name} could not be started again: {exc}")
        return
    state.record(fault, child.name, f"{new.name} started in place of {child.name}, ready")


async def _broker_fault(
    fault: Fault, state: Faults, tansu: TansuBroker, reprovision: Callable[[], Awaitable[None]]
) -> None:
    await state.until(fault.at_s)
    pid = tansu.pid
    state.killed.add("kafka")
    if pid is not None:  # a crash, not a clean stop: SIGKILL, then (restart) a new one
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    while tansu.exit_status() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
        await asyncio.sleep(0.01)
    state.record(fault, "kafka", f"the Kafka broker (Tansu, pid {pid}) was killed with SIGKILL")
    if fault.action == "kill":
        return
    try:
        await tansu.restart()
        await reprovision()
    except HopbenchError as exc:
        state.record(fault, "kafka", f"the Kafka broker could not be restarted: {exc}")
        return
    state.killed.discard("kafka")  # from now on, a death of the new one is named too
    state.record(
        fault,
        "kafka",
        f"the Kafka broker (Tansu) was started again on {tansu.bootstrap} (pid {tansu.pid}); "
        "memory only: every message the old one held was lost; the run's topics were "
        "created again",
    )


async def _watch_broker(state: Faults, tansu: TansuBroker) -> None:
    """Name the embedded broker's death the moment it happens, unless a fault did it."""
    while True:
        status = tansu.exit_status()
        if status is not None and "kafka" not in state.killed:
            how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
            state.record(None, "kafka", f"the Kafka broker (Tansu, pid {tansu.pid}) died ({how})")
            return
        await asyncio.sleep(0.1)


async def start_links(
    faults: list[Fault],
    urls: dict[str, str | None],
    agents: bool,
    stack: contextlib.AsyncExitStack,
) -> dict[str, LinkProxy]:
    """A proxy in front of each broker whose connections a fault drops or delays (and
    only then), by mode; the stack closes them."""
    links: dict[str, LinkProxy] = {}
    for fault in faults:
        if not fault.on_link:
            continue
        url = urls.get(fault.target)
        if url is None:
            raise ConfigError(f"--fault {fault.text}: this run does not use {fault.target}")
        if agents:
            raise ConfigError(
                f"--fault {fault.text}: the connections are faulted through a proxy on this "
                "host's loopback, which agents on other hosts cannot reach; run without --agents"
            )
        parts = urlsplit(url)
        proxy = LinkProxy(parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[parts.scheme])
        await proxy.start()
        stack.push_async_callback(proxy.close)
        links[fault.target] = proxy
    return links


DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
RECONNECT_WATCH_S = 60.0  # how long a drop's reconnections are watched for


async def _link_fault(fault: Fault, state: Faults, proxy: LinkProxy) -> None:
    """Drop every connection to the broker at once, or hold what they carry for a while;
    each is an event, and so is the moment the clients were connected again."""
    await state.until(fault.at_s)
    name = LINK_NAMES[fault.target]
    if fault.action == "drop":
        before, dropped = proxy.opened, proxy.drop()
        what = f"every connection to {name} ({dropped}) was dropped at the proxy"
        state.record(fault, fault.target, what)
        start = time.monotonic()
        await proxy.await_opened(before + dropped, RECONNECT_WATCH_S)
        took = time.monotonic() - start
        again = proxy.opened - before
        state.record(fault, fault.target,
                     f"{again} of {dropped} connections to {name} opened again within "
                     f"{took:.2f} s of the drop")  # fmt: skip
        return
    proxy.latency_s = fault.latency_s
    state.record(fault, fault.target,
                 f"every chunk to and from {name} is held {fault.latency_s * 1000:g} ms "
                 f"(each way) for {fault.for_s:g} s")  # fmt: skip
    try:
        await asyncio.sleep(fault.for_s)
    finally:
        proxy.latency_s = 0.0
    state.record(fault, fault.target, f"the delay on the connections to {name} ended")
