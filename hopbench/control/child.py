"""The orchestrator's handle on one child: a service replica or a load worker.

A local child is a process the orchestrator started, talking over its pipes. A
remote child is an agent (``hopbench agent``) on another host or container,
talking over TCP; it says Hello first, then learns who it is and gets the run's
spec in Configure. Both speak the same typed messages (hopbench.protocol.messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hopbench.brokers.procs import dies_with_us, terminate
from hopbench.clock import boot_id
from hopbench.config.secrets import TOKEN_ENV, token_mac
from hopbench.errors import HopbenchError, ProtocolError, RunError
from hopbench.protocol.messages import (
    Auth,
    Clock,
    ClockReply,
    Command,
    Error,
    Event,
    Hello,
    ServiceReport,
    Shutdown,
    Stop,
    WorkerReport,
    decode_event,
    encode,
)

STREAM_LIMIT = 256 * 1024 * 1024  # a report line carries encoded histograms and bitmaps
CLOCK_ROUNDS = 16
CONNECT_TIMEOUT_S = 10.0
LOCAL_BOOT_ID = boot_id()
E = TypeVar("E", bound=Event)
R = TypeVar("R", ServiceReport, WorkerReport)


@dataclass(frozen=True)
class ClockReading:
    """The child's monotonic clock minus ours, from the fastest of several round trips."""

    offset_ns: int
    uncertainty_ns: int  # half that round trip: the true offset is within ±this
    wall_offset_ns: int  # the same for the wall clocks, for the record (NTP's view)
    same_host: bool  # same kernel: one monotonic clock, the offset is exactly 0

    @property
    def applied_ns(self) -> int:
        """What the child subtracts from its clock: 0 on our own kernel."""
        return 0 if self.same_host else self.offset_ns

    def to_json(self) -> dict[str, Any]:
        return {
            "same_host": self.same_host,
            "offset_us": round(self.offset_ns / 1000, 1),
            "applied_offset_us": round(self.applied_ns / 1000, 1),
            "uncertainty_us": round(self.uncertainty_ns / 1000, 1),
            "wall_offset_us": round(self.wall_offset_ns / 1000, 1),
        }


class Child:
    def __init__(
        self,
        name: str,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], None],
        *,
        proc: asyncio.subprocess.Process | None = None,
        log_path: Path | None = None,
        writer: asyncio.StreamWriter | None = None,
        address: str | None = None,
        hello: Hello | None = None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.address = address  # host:port of a remote agent
        self.hello = hello  # a remote agent's; None for a local child
        self._reader = reader
        self._write = write
        self._writer = writer
        # One task reads and decodes every line, so that several waits (a report, a
        # progress reply, a clock probe) can be under way at once; each type of
        # event has its queue, by its tag.
        self._inbox: dict[str, asyncio.Queue[Event]] = defaultdict(asyncio.Queue)
        self._ended = asyncio.Event()
        self._fault: str | None = None  # why it ended, when it said or showed why
        self._pump = asyncio.get_running_loop().create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            while line := await self._reader.readline():
                event = decode_event(line)
                if isinstance(event, Error):
                    self._fault = f"reported an error: {event.message}"
                    break
                self._inbox[event.TAG].put_nowait(event)
        except ProtocolError as exc:
            self._fault = f"sent a line that is not an event ({exc})"
        except (ConnectionError, ValueError):
            pass
        finally:
            self._ended.set()

    @classmethod
    async def spawn(
        cls,
        name: str,
        module: str,
        args: list[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """A local child; env adds to ours (secrets, which its spec file does not hold)."""
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the orchestrator, which stops us in order
                preexec_fn=dies_with_us(),  # and on its kill -9, Linux kills us (a frozen one too)
                limit=STREAM_LIMIT,
                env={**os.environ, **env} if env else None,
            )
        assert proc.stdout is not None
        assert proc.stdin is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            if proc.returncode is None and not stdin.is_closing():
                stdin.write(data)

        return cls(name, proc.stdout, write, proc=proc, log_path=log_path)

    @classmethod
    async def connect(cls, name: str, address: str, token: str | None = None) -> Child:
        """Reach an agent at host:port, read its hello (its ports and kernel) and answer
        its challenge with the token; the token itself never travels."""
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port), limit=STREAM_LIMIT),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            raise RunError(
                f"{name}: no hopbench agent answers at {address} ({exc or 'timed out'}); "
                "start one there with `hopbench agent --listen HOST:PORT`"
            ) from None

        def write(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        child = cls(name, reader, write, writer=writer, address=address)
        child.hello = hello = await child.expect(Hello, CONNECT_TIMEOUT_S)
        if hello.challenge and token is None:
            await child.close()
            raise RunError(
                f"{name}: the agent at {address} only serves an orchestrator with its token; "
                f"set {TOKEN_ENV} (or pass --agent-token-file FILE) to the token the agent has"
            )
        if hello.challenge and token is not None:
            child.send(Auth(mac=token_mac(token, hello.challenge)))
        return child

    @property
    def remote(self) -> bool:
        return self.proc is None

    @property
    def alive(self) -> bool:
        """Still talking: it has not exited, hung up or reported an error."""
        return not self._ended.is_set()

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])

    def _failure(self, what: str) -> RunError:
        if self.remote:
            return RunError(f"{self.name} (agent at {self.address}) {what}; see the agent's log")
        tail = self.log_tail()
        return RunError(
            f"{self.name} {what} (log: {self.log_path})" + (f"\n{tail}" if tail else "")
        )

    async def expect(self, event: type[E], timeout_s: float) -> E:
        """The next event of this type; fail if the child ends first or is slow."""
        queue = self._inbox[event.TAG]
        if queue.empty() and not self._ended.is_set():
            got = asyncio.ensure_future(queue.get())
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                done, _ = await asyncio.wait(
                    {got, ended}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:  # the waiter gave up (a sampler that stops)
                got.cancel()
                ended.cancel()
                raise
            ended.cancel()
            if got in done:
                return _as(event, got.result())
            got.cancel()
            if not done:
                raise self._failure(f"sent no '{event.TAG}' within {timeout_s:.0f} s")
        if not queue.empty():
            return _as(event, queue.get_nowait())
        if self._fault is not None:
            raise self._failure(self._fault)
        if self.proc is not None:
            await self.proc.wait()
            raise self._failure(f"{_exit(self.proc.returncode)} before '{event.TAG}'")
        raise self._failure(f"closed the connection before '{event.TAG}'")

    def send(self, command: Command) -> None:
        self._write(encode(command))

    async def ask(self, command: Command, reply: type[E], timeout_s: float) -> E:
        """Send a command and wait for its reply."""
        self.send(command)
        return await self.expect(reply, timeout_s)

    async def read_clock(self, rounds: int = CLOCK_ROUNDS) -> ClockReading:
        best: tuple[int, int, int, str] | None = None
        for _ in range(rounds):
            wall0, t0 = time.time_ns(), time.monotonic_ns()
            reply = await self.ask(Clock(), ClockReply, CONNECT_TIMEOUT_S)
            t1, wall1 = time.monotonic_ns(), time.time_ns()
            rtt = t1 - t0
            if best is None or rtt < best[0]:
                offset = reply.t_ns - (t0 + t1) // 2
                wall = reply.wall_ns - (wall0 + wall1) // 2
                best = (rtt, offset, wall, reply.boot_id)
        assert best is not None
        rtt, offset, wall, their_boot = best
        same = bool(their_boot) and their_boot == LOCAL_BOOT_ID
        return ClockReading(offset, rtt // 2, wall, same)

    async def finish(self, report_type: type[R], timeout_s: float) -> R:
        """Ask the child to stop, collect its report, and wait for it to exit."""
        report = await self.ask(Stop(), report_type, timeout_s)
        if self.proc is None:
            await self.close()
            return report
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await terminate(self.proc)
        return report

    async def close(self) -> None:
        self._pump.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def kill(self) -> None:
        """Stop a local child (its process group); hang up on a remote one, which
        ends its run (an agent stops a run when its orchestrator goes away)."""
        if self.proc is not None:
            await terminate(self.proc, grace_s=3.0)
            self._pump.cancel()
        else:
            await self.close()


async def shutdown_agent(address: str, token: str | None = None) -> None:
    """Tell an agent to exit (a best effort: it may be gone already)."""
    with contextlib.suppress(HopbenchError):
        child = await Child.connect("agent", address, token)
        child.send(Shutdown())
        await child.close()


def _as(event: type[E], message: Event) -> E:
    """A message from event's own queue: of that type (this tells the type checker)."""
    assert isinstance(message, event)
    return message


def _exit(status: int | None) -> str:
    """How a process ended, in words: a negative status is the signal that killed it."""
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"
