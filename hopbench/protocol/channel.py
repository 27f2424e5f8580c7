"""The child's end of the control protocol: a service replica or a load worker reads
commands and writes events (hopbench.protocol.messages, one JSON line each), over
pipes for a child the orchestrator started, over TCP for an agent (``hopbench
agent``) on another host.

A child says Ready, then follows Start, Progress, Sample, LateAfter and Stop, and
ends with its report; a Clock probe is answered at once, at any time, with this
host's monotonic and wall clocks. A line that is not a command is answered with an Error
and skipped. Logs go to stderr, which the parent sends to a file per child. A child
stops cleanly on Stop, on SIGTERM and when its input closes; on Linux the parent also
ties it to its own life (hopbench.brokers.procs.dies_with_us): it is killed when the
parent dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import uvloop

from hopbench.clock import boot_id, local_ns
from hopbench.errors import ProtocolError
from hopbench.protocol.messages import (
    Clock,
    ClockReply,
    Command,
    Error,
    Event,
    Stop,
    decode_command,
    encode,
)

BOOT_ID = boot_id()
log = logging.getLogger("hopbench.protocol")


class LineTooLong(ProtocolError):
    """A line over the reader's limit (which the reader has skipped)."""


class ChildChannel:
    """The child's end: read commands, write events. Over the orchestrator's pipes
    (stdin/stdout) or, for an agent on another host, over a TCP connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], None],
        stop: asyncio.Event,
        hang_up_on_long_line: bool = False,
    ) -> None:
        self._reader = reader
        self._write = write
        self._stop = stop
        # an agent's peer that sends a line over the limit is broken or hostile: the
        # rest of that line would only come in as more bad lines
        self._hang_up_on_long_line = hang_up_on_long_line

    @classmethod
    async def stdio(cls, stop: asyncio.Event) -> ChildChannel:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        def write(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

        return cls(reader, write, stop)

    def emit(self, event: Event) -> None:
        self._write(encode(event))

    async def commands(self) -> AsyncIterator[Command]:
        """Commands until Stop, SIGTERM or end of input (each ends as a Stop). Clock
        probes are answered here, at any time, and not passed on; a line that is not
        a command is answered with an Error and skipped."""
        while True:
            try:
                command = await self._next_command()
            except ProtocolError as exc:
                log.warning("bad command line: %s", exc)
                self.emit(Error(message=f"bad command line: {exc}"))
                if self._hang_up_on_long_line and isinstance(exc, LineTooLong):
                    yield Stop()
                    return
                continue
            if isinstance(command, Clock):
                # read the monotonic clock last: the reply leaves right after it
                self.emit(ClockReply(boot_id=BOOT_ID, wall_ns=time.time_ns(), t_ns=local_ns()))
                continue
            yield command
            if isinstance(command, Stop):
                return

    async def _next_command(self) -> Command:
        """The next line's command; a Stop on SIGTERM, a hang-up or the end of input."""
        line_task = asyncio.ensure_future(self._reader.readline())
        stop_task = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({line_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if stop_task in done:
            line_task.cancel()
            return Stop()
        stop_task.cancel()
        try:
            line = line_task.result()
        except ConnectionError:
            return Stop()
        except ValueError as exc:  # over the reader's limit: it has skipped the line
            raise LineTooLong(f"a line too long ({exc})") from None
        return decode_command(line) if line else Stop()


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
    setup_logging()

    async def wrapped() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C
        await main(await ChildChannel.stdio(stop))

    run_loop(wrapped())
