"""``hopbench agent``: a service replica or load worker that an orchestrator on
another host (or container) drives over TCP instead of pipes.

The agent listens on a control port and serves one orchestrator at a time:

1. on connect it says Hello (its data ports, kernel boot id and, when it has a
   token, a fresh nonce: the challenge);
2. with a token, the first line must be Auth, HMAC-SHA256 of the nonce under
   the token, within AUTH_WITHIN_S; anything else is refused and the connection
   closed (the token itself never travels);
3. the orchestrator reads its clock (Clock probes, see hopbench.clock);
4. Configure tells it what to be (service and replica, or load worker), the
   run's spec and its clock offset; from there the run is exactly that of a
   child started by the orchestrator (Ready, Start, Progress, Stop, a report).

Then it waits for the next run: one set of containers serves a whole suite.
A run ends when the orchestrator hangs up, too. SIGTERM ends the agent, and so
does Shutdown, which an orchestrator sends to its load worker agents when it
is done with them (a Kubernetes Job's pods must exit for the Job to complete);
``--exit-idle`` is the safety net when no orchestrator comes, or comes back.

What an agent accepts is bounded (``Limits``): the length of a control line,
the connections at once, the time from connecting to Start, and a load
worker's rate, payload and duration, unless its own flags raise them. Its HTTP
and gRPC servers bind the ``--listen`` host and its own ports, whatever the
spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hopbench import clock
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.config.secrets import mac_matches
from hopbench.config.topology import LOADGEN
from hopbench.errors import HopbenchError, ProtocolError
from hopbench.loadgen.process import drive
from hopbench.measure.usage import machine
from hopbench.protocol.channel import BOOT_ID, ChildChannel, run_loop, setup_logging
from hopbench.protocol.messages import (
    Auth,
    Command,
    Configure,
    Error,
    Hello,
    Shutdown,
    Start,
    decode_command,
    encode,
)
from hopbench.services.process import serve
from hopbench.transports.context import TransportContext

log = logging.getLogger("hopbench.control.agent")
AUTH_WITHIN_S = 10.0
# after a refusal, what the peer had already sent is read: for this long, this much at most
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """What an agent accepts; each has its flag (`hopbench agent --help`)."""

    max_line_bytes: int = 4 * 1024 * 1024  # a Configure carries the spec: a few kB
    max_connections: int = 8  # an orchestrator, a few health probes, a Shutdown
    start_within_s: float = 600.0  # connect → Start; above the orchestrator's --agents-wait
    max_rate: float = 50_000.0  # messages per second, one load worker's share
    max_payload_bytes: int = 1024 * 1024
    max_duration_s: float = 3600.0  # warm-up and measured window together

    def check(self, load: LoadSpec) -> str | None:
        """Why this agent will not be this load, or None."""
        share = load.rate / load.workers
        if not load.closed and share > self.max_rate:
            return (
                f"a load worker's rate of {share:g}/s is over this agent's limit of "
                f"{self.max_rate:g}/s; start it with a higher --max-rate, or use more --workers"
            )
        if load.payload_bytes > self.max_payload_bytes:
            return (
                f"a payload of {load.payload_bytes} bytes is over this agent's limit of "
                f"{self.max_payload_bytes}; start it with a higher --max-payload"
            )
        if load.warmup_s + load.duration_s > self.max_duration_s:
            return (
                f"a run of {load.warmup_s + load.duration_s:g} s is over this agent's limit "
                f"of {self.max_duration_s:g} s; start it with a higher --max-duration"
            )
        return None


async def _last_word(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """End our side after the message written last, then read and drop what the peer
    had already sent (LINGER_S, LINGER_BYTES at most: a peer that floods is not read
    on): closing a socket with unread input makes the kernel reset the connection, and
    the peer may lose the message unread."""
    with contextlib.suppress(OSError, RuntimeError):
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(OSError, TimeoutError, ValueError):
        async with asyncio.timeout(LINGER_S):
            left = LINGER_BYTES
            while left > 0 and (data := await reader.read(min(left, 65536))):
                left -= len(data)


class _RunChannel(ChildChannel):
    """The channel of one connection: it notes when the run starts."""

    started = False

    async def commands(self) -> AsyncIterator[Command]:
        async for command in super().commands():
            if isinstance(command, Start):
                self.started = True
            yield command


class Agent:
    def __init__(
        self,
        host: str,
        ports: dict[str, int],
        exit_idle_s: float | None,
        token: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.host = host  # its data servers bind here too
        self.ports = ports
        self.exit_idle_s = exit_idle_s
        self.token = token
        self.limits = limits or Limits()
        self.runs = 0
        self.done = asyncio.Event()  # SIGTERM, Shutdown, or idle too long
        self._busy = False
        self._connections = 0
        self._idle: asyncio.TimerHandle | None = None

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """An orchestrator's connection, or a health probe (which only reads the hello).
        Only a run makes the agent busy: a probe never turns an orchestrator away."""
        peer = writer.get_extra_info("peername")
        self._connections += 1
        try:
            if self._connections > self.limits.max_connections:
                log.warning("%s turned away: %d connections already", peer, self._connections - 1)
                writer.write(encode(Error(message="too many connections to this agent")))
                await _last_word(reader, writer)
            else:
                await self._converse(reader, writer, peer)
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        challenge = secrets.token_hex(16) if self.token else ""
        writer.write(
            encode(
                Hello(
                    ports=self.ports,
                    boot_id=BOOT_ID,
                    machine=machine(),
                    busy=self._busy,
                    challenge=challenge,
                )
            )
        )
        if challenge:
            refusal = await self._authenticate(reader, challenge)
            if refusal is not None:
                log.warning("%s refused: %s", peer, refusal)
                writer.write(encode(Error(message=f"refused: {refusal}")))
                await _last_word(reader, writer)
                return
        hangup = asyncio.Event()  # a run stops when the orchestrator hangs up, or we end
        ending = asyncio.ensure_future(self.done.wait())
        ending.add_done_callback(lambda _: hangup.set())
        channel = _RunChannel(reader, writer.write, hangup, hang_up_on_long_line=True)
        late = asyncio.get_running_loop().call_later(
            self.limits.start_within_s, self._too_late, channel, hangup, peer
        )
        try:
            await self._serve(channel, peer)
        except Exception as exc:
            log.exception("run for %s failed", peer)
            channel.emit(Error(message=f"the agent failed: {exc!r}"))
        finally:
            late.cancel()
            ending.cancel()

    async def _authenticate(self, reader: asyncio.StreamReader, challenge: str) -> str | None:
        """None when the first line answers the challenge; else why not, in words."""
        assert self.token is not None
        need = "this agent only serves an orchestrator with its token (HOPBENCH_AGENT_TOKEN)"
        try:
            line = await asyncio.wait_for(reader.readline(), AUTH_WITHIN_S)
            command = decode_command(line)
        except TimeoutError:
            return f"{need}; no answer within {AUTH_WITHIN_S:g} s"
        except ValueError:  # over the line limit (ProtocolError is not a ValueError)
            return f"{need}; the first line is over {self.limits.max_line_bytes} bytes"
        except (ProtocolError, ConnectionError) as exc:
            return f"{need}; the first line is not an answer ({exc})"
        if not isinstance(command, Auth):
            return f"{need}; got '{command.TAG}' first"
        if not mac_matches(self.token, challenge, command.mac):
            return f"{need}; the answer does not match: the orchestrator has another token"
        return None

    def _too_late(
        self, channel: _RunChannel, hangup: asyncio.Event, peer: object
    ) -> None:  # a timer's callback
        if channel.started:
            return
        limit = self.limits.start_within_s
        log.warning("%s: no run started within %g s of connecting; hanging up", peer, limit)
        what = f"no run started within {limit:g} s of connecting (this agent's --start-within)"
        channel.emit(Error(message=what))
        hangup.set()

    async def _serve(self, channel: _RunChannel, peer: object) -> None:
        async for command in channel.commands():
            if isinstance(command, Shutdown):  # the orchestrator is done with this Job pod
                self.done.set()
            elif isinstance(command, Configure) and self._busy:
                channel.emit(Error(message="this agent is serving another orchestrator"))
            elif isinstance(command, Configure):
                await self._run(channel, command)
            elif isinstance(command, Auth):
                continue  # an answer to a challenge it was not asked (no token here)
            break

    async def _run(self, channel: ChildChannel, command: Configure) -> None:
        try:
            spec = RunSpec.model_validate(command.spec)
        except ValueError as exc:  # pydantic's ValidationError is one
            channel.emit(Error(message=f"configure: not a run spec ({exc})"))
            return
        role, replica = command.service, command.replica
        refusal = self.limits.check(spec.load) if role == LOADGEN else None
        if refusal is not None:
            channel.emit(Error(message=f"refused: {refusal}"))
            return
        try:
            context = TransportContext.of(spec, role, replica, listen=self.host, ports=self.ports)
        except HopbenchError as exc:  # no RabbitMQ password in its environment
            channel.emit(Error(message=str(exc)))
            return
        self._busy = True
        if self._idle is not None:
            self._idle.cancel()  # only runs count as activity, not probes
        self.runs += 1
        try:
            clock.set_offset(command.clock_offset_ns)
            print(f"hopbench agent: run {spec.run_id}: {role}/{replica}", flush=True)
            if role == LOADGEN:
                await drive(channel, context, spec.load)
            else:
                await serve(channel, context)
        finally:
            clock.set_offset(0)
            self._busy = False
            self.arm_idle()

    def arm_idle(self) -> None:
        """Exit after --exit-idle seconds without a run: from the start, and after each."""
        if self.exit_idle_s is not None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.exit_idle_s, self.done.set)


async def serve_agent(agent: Agent, port: int) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.done.set)
    server = await asyncio.start_server(
        agent.on_connect, agent.host, port, limit=agent.limits.max_line_bytes
    )
    auth = "token required" if agent.token else "no token"
    print(
        f"hopbench agent: control on {agent.host}:{port} ({auth}), data ports {agent.ports}",
        flush=True,
    )
    agent.arm_idle()
    async with server:
        await agent.done.wait()
    print(f"hopbench agent: done after {agent.runs} run(s)", flush=True)


def main(
    host: str,
    port: int,
    ports: dict[str, int],
    exit_idle_s: float | None,
    token: str | None,
    limits: Limits,
) -> None:
    setup_logging()

    async def start() -> None:
        await serve_agent(Agent(host, ports, exit_idle_s, token, limits), port)

    run_loop(start())
