"""The orchestrator's handle on one child process (service replica or load worker)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hopbench.broker.procs import terminate
from hopbench.errors import RunError

STREAM_LIMIT = 256 * 1024 * 1024  # a report line carries encoded histograms and bitmaps


class Child:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

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
        return cls(name, proc, log_path)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])

    def _failure(self, what: str) -> RunError:
        tail = self.log_tail()
        return RunError(
            f"{self.name} {what} (log: {self.log_path})" + (f"\n{tail}" if tail else "")
        )

    async def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        """Read events until one named event arrives; fail if the child dies or is slow."""
        assert self.proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), max(remaining, 0.001))
            except TimeoutError:
                raise self._failure(f"sent no '{event}' within {timeout_s:.0f} s") from None
            if not line:
                await self.proc.wait()
                raise self._failure(f"exited with status {self.proc.returncode} before '{event}'")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message

    def send(self, cmd: str, **data: Any) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(json.dumps({"cmd": cmd, **data}).encode() + b"\n")

    async def ask(self, cmd: str, event: str, timeout_s: float) -> dict[str, Any]:
        self.send(cmd)
        return await self.expect(event, timeout_s)

    async def finish(self, timeout_s: float) -> dict[str, Any]:
        """Ask the child to stop, collect its report, and wait for it to exit."""
        report = await self.ask("stop", "report", timeout_s)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await terminate(self.proc)
        return report

    async def kill(self) -> None:
        await terminate(self.proc, grace_s=3.0)
