"""How the orchestrator and its child processes talk: JSON lines, over pipes for a
child it started, over TCP for an agent (``hopbench agent``) on another host.

Child → parent on stdout: ``{"event": "ready"}``, ``{"event": "progress", ...}``,
``{"event": "report", ...}``. Parent → child on stdin: ``{"cmd": "start", ...}``,
``{"cmd": "progress"}``, ``{"cmd": "stop"}``, and at any time ``{"cmd": "clock"}``,
answered at once with this host's monotonic and wall clocks. Logs go to stderr, which the parent
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
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import uvloop

from hopbench.clock import boot_id, local_ns
from hopbench.measure.usage import usage

_PR_SET_PDEATHSIG = 1
BOOT_ID = boot_id()


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent exits (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildChannel:
    """The child's end: read commands, write events. Over the orchestrator's pipes
    (stdin/stdout) or, for an agent on another host, over a TCP connection."""

    def __init__(
        self, reader: asyncio.StreamReader, write: Callable[[bytes], None], stop: asyncio.Event
    ) -> None:
        self._reader = reader
        self._write = write
        self._stop = stop

    @classmethod
    async def stdio(cls, stop: asyncio.Event) -> ChildChannel:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        def write(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

        return cls(reader, write, stop)

    def emit(self, event: str, **data: Any) -> None:
        """One event; every event carries the process's CPU and memory use so far."""
        self._write(json.dumps({"event": event, "usage": usage(), **data}).encode() + b"\n")

    def _clock(self) -> None:
        # read the clock last: the reply leaves right after it
        reply = {"event": "clock", "boot_id": BOOT_ID, "wall_ns": time.time_ns()}
        reply["t_ns"] = local_ns()
        self._write(json.dumps(reply).encode() + b"\n")

    async def commands(self) -> AsyncIterator[dict[str, Any]]:
        """Commands until "stop", SIGTERM or end of input (each ends as a "stop").
        Clock probes are answered here, at any time, and not passed on."""
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
            try:
                line = line_task.result()
            except ConnectionError:
                line = b""
            if not line:
                yield {"cmd": "stop"}
                return
            command: dict[str, Any] = json.loads(line)
            if command.get("cmd") == "clock":
                self._clock()
                continue
            yield command
            if command.get("cmd") == "stop":
                return


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("HOPBENCH_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a process's main coroutine on uvloop (HOPBENCH_LOOP=asyncio for plain asyncio)."""
    factory = None if os.environ.get("HOPBENCH_LOOP") == "asyncio" else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def run_child(main: Callable[[ChildChannel], Coroutine[Any, Any, None]]) -> None:
    """Run a child of the orchestrator: commands on stdin, events on stdout, logs on stderr."""
    die_with_parent()
    setup_logging()

    async def wrapped() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C
        await main(await ChildChannel.stdio(stop))

    run_loop(wrapped())
