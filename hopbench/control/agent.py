"""``hopbench agent``: a service replica or load worker that an orchestrator on
another host (or container) drives over TCP instead of pipes.

The agent listens on a control port and serves one orchestrator at a time:

1. on connect it says Hello (its data ports and kernel boot id);
2. the orchestrator reads its clock (Clock probes, see hopbench.clock);
3. Configure tells it what to be (service and replica, or load worker), the
   run's spec and its clock offset; from there the run is exactly that of a
   child started by the orchestrator (Ready, Start, Progress, Stop, a report).

Then it waits for the next run: one set of containers serves a whole suite.
A run ends when the orchestrator hangs up, too. SIGTERM ends the agent, and so
does Shutdown, which an orchestrator sends to its load worker agents when it
is done with them (a Kubernetes Job's pods must exit for the Job to complete);
``--exit-idle`` is the safety net when no orchestrator comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from hopbench import clock
from hopbench.config.runspec import RunSpec
from hopbench.config.topology import LOADGEN
from hopbench.loadgen.process import drive
from hopbench.measure.usage import machine
from hopbench.protocol.channel import BOOT_ID, ChildChannel, run_loop, setup_logging
from hopbench.protocol.messages import Configure, Error, Hello, Shutdown
from hopbench.services.process import serve
from hopbench.transports.context import TransportContext

log = logging.getLogger("hopbench.control.agent")


class Agent:
    def __init__(self, http_port: int, grpc_port: int, exit_idle_s: float | None) -> None:
        self.ports = {"http": http_port, "grpc": grpc_port}
        self.exit_idle_s = exit_idle_s
        self.runs = 0
        self.done = asyncio.Event()  # SIGTERM, or idle too long
        self._busy = False
        self._idle: asyncio.TimerHandle | None = None

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """An orchestrator's connection, or a health probe (which only reads the hello).
        Only a run makes the agent busy: a probe never turns an orchestrator away."""
        peer = writer.get_extra_info("peername")
        hangup = asyncio.Event()  # a run stops when the orchestrator hangs up or we end
        ending = asyncio.ensure_future(self.done.wait())
        ending.add_done_callback(lambda _: hangup.set())
        channel = ChildChannel(reader, writer.write, hangup)
        try:
            channel.emit(
                Hello(ports=self.ports, boot_id=BOOT_ID, machine=machine(), busy=self._busy)
            )
            async for command in channel.commands():
                if isinstance(command, Shutdown):  # the orchestrator is done with this Job pod
                    self.done.set()
                elif isinstance(command, Configure) and self._busy:
                    channel.emit(Error(message="this agent is serving another orchestrator"))
                elif isinstance(command, Configure):
                    await self._run(channel, command)
                break
        except Exception:
            log.exception("run for %s failed", peer)
        finally:
            ending.cancel()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _run(self, channel: ChildChannel, command: Configure) -> None:
        self._busy = True
        if self._idle is not None:
            self._idle.cancel()  # only runs count as activity, not probes
        self.runs += 1
        try:
            spec = RunSpec.model_validate(command.spec)
            role, replica = command.service, command.replica
            clock.set_offset(command.clock_offset_ns)
            context = TransportContext.of(spec, role, replica, listen="0.0.0.0")
            print(f"hopbench agent: run {spec.run_id}: {role}/{replica}", flush=True)
            if role == LOADGEN:
                await drive(channel, context, spec.load)
            else:
                await serve(channel, context)
        finally:
            clock.set_offset(0)
            self._busy = False
            self._arm_idle()

    def _arm_idle(self) -> None:
        if self.exit_idle_s is not None and self.runs > 0:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.exit_idle_s, self.done.set)


async def serve_agent(
    host: str, port: int, http_port: int, grpc_port: int, exit_idle_s: float | None
) -> None:
    agent = Agent(http_port, grpc_port, exit_idle_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.done.set)
    server = await asyncio.start_server(agent.on_connect, host, port, limit=1 << 28)
    print(f"hopbench agent: control on {host}:{port}, data ports {agent.ports}", flush=True)
    async with server:
        await agent.done.wait()
    print(f"hopbench agent: done after {agent.runs} run(s)", flush=True)


def main(host: str, port: int, http_port: int, grpc_port: int, exit_idle_s: float | None) -> None:
    setup_logging()
    run_loop(serve_agent(host, port, http_port, grpc_port, exit_idle_s))
