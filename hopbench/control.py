"""How the orchestrator and its child processes talk: JSON lines over pipes.

Child → parent on stdout: ``{"event": "ready"}``, ``{"event": "progress", ...}``,
``{"event": "report", ...}``. Parent → child on stdin: ``{"cmd": "start", ...}``,
``{"cmd": "progress"}``, ``{"cmd": "stop"}``. Logs go to stderr, which the parent
sends to a file per child. A child stops cleanly on "stop", on SIGTERM and when
its stdin closes; on Linux it also gets SIGTERM when the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

_PR_SET_PDEATHSIG = 1


def usage() -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}


def proc_usage(pid: int) -> dict[str, float] | None:
    """The same, read from /proc for a process that is not ours to ask (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), "0")
    return {"cpu_s": (int(stat[11]) + int(stat[12])) / ticks, "peak_rss_mb": int(hwm) / 1024}


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent exits (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildChannel:
    """The child's end: read commands, write events."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C
        reader = self._reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def emit(self, event: str, **data: Any) -> None:
        """One event; every event carries the process's CPU and memory use so far."""
        message = {"event": event, "usage": usage(), **data}
        sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
        sys.stdout.buffer.flush()

    async def commands(self) -> AsyncIterator[dict[str, Any]]:
        """Commands until "stop", SIGTERM or end of input (each ends as a "stop")."""
        assert self._reader is not None
        while True:
            line_task = asyncio.ensure_future(self._reader.readline())
            stop_task = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait(
                {line_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if stop_task in done:
                line_task.cancel()
                yield {"cmd": "stop"}
                return
            stop_task.cancel()
            line = line_task.result()
            if not line:
                yield {"cmd": "stop"}
                return
            command: dict[str, Any] = json.loads(line)
            yield command
            if command.get("cmd") == "stop":
                return


def run_child(main: Callable[[ChildChannel], Coroutine[Any, Any, None]]) -> None:
    """Run a child's main coroutine on uvloop, with logs on stderr."""
    die_with_parent()
    logging.basicConfig(
        level=os.environ.get("HOPBENCH_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def wrapped() -> None:
        channel = ChildChannel()
        await channel.open()
        await main(channel)

    factory = None if os.environ.get("HOPBENCH_LOOP") == "asyncio" else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(wrapped())
