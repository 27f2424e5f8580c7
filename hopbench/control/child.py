"""The orchestrator's handle on one child: a service replica or a load worker.

A local child is a process the orchestrator started, talking over its pipes. A
remote child is an agent (``hopbench agent``) on another host or container,
talking over TCP; it learns who it is and gets the run's spec in "configure".
Both speak the same JSON lines (hopbench.protocol.channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopbench.brokers.procs import terminate
from hopbench.clock import boot_id
from hopbench.errors import HopbenchError, RunError

STREAM_LIMIT = 256 * 1024 * 1024  # a report line carries encoded histograms and bitmaps
CLOCK_ROUNDS = 16
CONNECT_TIMEOUT_S = 10.0
LOCAL_BOOT_ID = boot_id()


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
        hello: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.address = address  # host:port of a remote agent
        self.hello = hello or {}
        self._reader = reader
        self._write = write
        self._writer = writer
        # One task reads every line, so that several waits (a report, a progress
        # reply, a clock probe) can be under way at once; each event has its queue.
        self._inbox: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self._ended = asyncio.Event()
        self._refusal: str | None = None
        self._pump = asyncio.get_running_loop().create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            while line := await self._reader.readline():
                message: dict[str, Any] = json.loads(line)
                if message.get("event") == "error":
                    self._refusal = str(message.get("message"))
                    break
                self._inbox[str(message.get("event"))].put_nowait(message)
        except (ConnectionError, ValueError):
            pass
        finally:
            self._ended.set()

    @classmethod
    async def spawn(cls, name: str, module: str, args: list[str], log_path: Path) -> Child:
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
                limit=STREAM_LIMIT,
            )
        assert proc.stdout is not None
        assert proc.stdin is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            if proc.returncode is None and not stdin.is_closing():
                stdin.write(data)

        return cls(name, proc.stdout, write, proc=proc, log_path=log_path)

    @classmethod
    async def connect(cls, name: str, address: str) -> Child:
        """Reach an agent at host:port and read its hello (its ports and kernel)."""
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
        child.hello = await child.expect("hello", CONNECT_TIMEOUT_S)
        return child

    @property
    def remote(self) -> bool:
        return self.proc is None

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

    async def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        """The next event of this name; fail if the child ends first or is slow."""
        queue = self._inbox[event]
        if queue.empty() and not self._ended.is_set():
            got = asyncio.ensure_future(queue.get())
            ended = asyncio.ensure_future(self._ended.wait())
            done, _ = await asyncio.wait(
                {got, ended}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            ended.cancel()
            if got in done:
                return got.result()
            got.cancel()
            if not done:
                raise self._failure(f"sent no '{event}' within {timeout_s:.0f} s")
        if not queue.empty():
            return queue.get_nowait()
        if self._refusal is not None:
            raise self._failure(f"reported an error: {self._refusal}")
        if self.proc is not None:
            await self.proc.wait()
            raise self._failure(f"exited with status {self.proc.returncode} before '{event}'")
        raise self._failure(f"closed the connection before '{event}'")

    def send(self, cmd: str, **data: Any) -> None:
        self._write(json.dumps({"cmd": cmd, **data}).encode() + b"\n")

    async def ask(self, cmd: str, event: str, timeout_s: float) -> dict[str, Any]:
        return await self.ask_for(cmd, event, timeout_s)

    async def ask_for(self, cmd: str, event: str, timeout_s: float, **data: Any) -> dict[str, Any]:
        self.send(cmd, **data)
        return await self.expect(event, timeout_s)

    async def read_clock(self, rounds: int = CLOCK_ROUNDS) -> ClockReading:
        best: tuple[int, int, int, str] | None = None
        for _ in range(rounds):
            wall0, t0 = time.time_ns(), time.monotonic_ns()
            reply = await self.ask("clock", "clock", CONNECT_TIMEOUT_S)
            t1, wall1 = time.monotonic_ns(), time.time_ns()
            rtt = t1 - t0
            if best is None or rtt < best[0]:
                offset = int(reply["t_ns"]) - (t0 + t1) // 2
                wall = int(reply["wall_ns"]) - (wall0 + wall1) // 2
                best = (rtt, offset, wall, str(reply.get("boot_id", "")))
        assert best is not None
        rtt, offset, wall, their_boot = best
        same = bool(their_boot) and their_boot == LOCAL_BOOT_ID
        return ClockReading(offset, rtt // 2, wall, same)

    async def finish(self, timeout_s: float) -> dict[str, Any]:
        """Ask the child to stop, collect its report, and wait for it to exit."""
        report = await self.ask("stop", "report", timeout_s)
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


async def shutdown_agent(address: str) -> None:
    """Tell an agent to exit (a best effort: it may be gone already)."""
    with contextlib.suppress(HopbenchError):
        child = await Child.connect("agent", address)
        child.send("shutdown")
        await child.close()
