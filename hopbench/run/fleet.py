"""The run's processes: one child per service replica and per load worker, started
here or reached as agents, with the clock readings taken at the start and the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopbench.config.deployment import Placement, addresses, host_of
from hopbench.config.runspec import RunSpec
from hopbench.config.topology import LOADGEN
from hopbench.control.child import Child, ClockReading
from hopbench.errors import HopbenchError, RunError
from hopbench.protocol.messages import Configure, LateAfter, Progress, ProgressReply
from hopbench.run.provision import Agent


@dataclass
class Fleet:
    services: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)
    clocks: dict[str, ClockReading] = field(default_factory=dict)
    drift: dict[str, int] = field(default_factory=dict)
    # added to the environment of the processes it starts: the secrets a spec leaves out
    child_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def children(self) -> list[Child]:
        return [*self.services, *self.workers]

    async def connect(
        self, into: list[Child], placement: Placement, template: str, service: str, count: int
    ) -> None:
        """Reach every replica's agent, trying again for placement.wait_s (pods starting)."""
        deadline = time.monotonic() + placement.wait_s
        while True:
            found: list[Child] = []
            try:
                for replica, address in enumerate(addresses(template, service, count)):
                    name = f"{service}/{replica}"
                    found.append(await Child.connect(name, address, placement.token))
                    if (hello := found[-1].hello) is not None and hello.busy:
                        raise RunError(
                            f"{service}/{replica}: the agent at {address} is serving another "
                            "orchestrator; one agent is one process of one run at a time"
                        )
                break
            except RunError:
                await asyncio.gather(*(c.close() for c in found))
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        for child in found:
            into.append(child)
            self.clocks[child.name] = await child.read_clock()

    def agents_of(self, service: str) -> list[Agent]:
        return [
            (host_of(c.address or ""), c.hello.ports)
            for c in self.services
            if c.hello is not None and c.name.split("/")[0] == service
        ]

    def configure(self, child: Child, spec: RunSpec) -> None:
        service, replica = child.name.split("/")
        offset = self.clocks[child.name].applied_ns
        dump = spec.model_dump(mode="json")
        child.send(
            Configure(service=service, replica=int(replica), spec=dump, clock_offset_ns=offset)
        )

    async def spawn_services(self, spec: RunSpec, spec_path: Path, run_dir: Path) -> None:
        for name, svc in spec.resolved.services.items():
            for replica in range(svc.replicas):
                # service and replica first: `ps` shows them even when it truncates
                args = ["--service", name, "--replica", str(replica), "--spec", str(spec_path)]
                log = run_dir / f"{name}-{replica}.log"
                self.services.append(
                    await Child.spawn(
                        f"{name}/{replica}", "hopbench.services", args, log, self.child_env
                    )
                )

    async def respawn(self, child: Child, run_dir: Path) -> Child:
        """A new process for a replica whose process was killed: the same service and
        replica (so the same endpoint), named NAME#2 (then #3...) beside the dead one."""
        service, replica = child.name.split("#")[0].split("/")
        incarnation = 1 + sum(c.name.split("#")[0] == f"{service}/{replica}" for c in self.services)
        args = ["--service", service, "--replica", replica, "--spec", str(run_dir / "spec.json")]
        log = run_dir / f"{service}-{replica}-{incarnation}.log"
        new = await Child.spawn(
            f"{service}/{replica}#{incarnation}", "hopbench.services", args, log
        )
        self.services.append(new)
        return new

    async def spawn_workers(self, spec: RunSpec, spec_path: Path, run_dir: Path) -> None:
        for w in range(spec.load.workers):
            args = ["--worker", str(w), "--spec", str(spec_path)]
            log = run_dir / f"loadgen-{w}.log"
            self.workers.append(
                await Child.spawn(f"{LOADGEN}/{w}", "hopbench.loadgen", args, log, self.child_env)
            )

    async def read_clocks(self, children: list[Child]) -> None:
        readings = await asyncio.gather(*(c.read_clock() for c in children))
        for child, reading in zip(children, readings, strict=True):
            first = self.clocks.setdefault(child.name, reading)
            if first is not reading:
                self.drift[child.name] = reading.offset_ns - first.offset_ns

    def clock_of(self, name: str) -> dict[str, Any] | None:
        reading = self.clocks.get(name)
        if reading is None:
            return None
        drift = self.drift.get(name)
        return {**reading.to_json(), "drift_us": None if drift is None else round(drift / 1000, 1)}

    def clock_notes(self) -> list[str]:
        """Say how far to trust timestamps that crossed hosts."""
        other = {n: r for n, r in self.clocks.items() if not r.same_host}
        if not other:
            return []
        worst = max(other.values(), key=lambda r: r.uncertainty_ns)
        drift = max((abs(d) for n, d in self.drift.items() if n in other), default=0)
        return [
            f"{len(other)} process(es) ran on other hosts; their clocks were aligned to the "
            f"orchestrator's within ±{worst.uncertainty_ns / 1000:.0f} µs (half the fastest "
            f"control round trip), and drifted by up to {drift / 1000:.0f} µs during the run; "
            "a latency measured across two hosts carries both hosts' error"
        ]

    async def kill_all(self) -> None:
        await asyncio.gather(*(c.kill() for c in self.children))


class ChildRecording:
    """A child that records completions, as the drain phase sees it."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.last = 0

    async def completed(self) -> int:
        """Its completions so far; once it has died, what it last said (its recorder is
        gone: the result counts those messages as lost, and the process as died)."""
        if self.child.alive:
            with contextlib.suppress(HopbenchError):
                self.last = (await self.child.ask(Progress(), ProgressReply, 10)).completed
        return self.last

    def late_after(self, t_ns: int) -> None:
        self.child.send(LateAfter(t_ns=t_ns))
