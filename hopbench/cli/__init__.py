"""The hopbench command line: `validate` a topology, `run` it, `compare` a suite,
`report`, `diff` two results, `render` deployment files, serve as an `agent`.

``main`` maps every hopbench error to its message and exit status: never a traceback.
SIGTERM and SIGHUP stop a command as Ctrl-C does: every process, broker, queue and
topic it started is stopped or deleted, then it exits with 128 + the signal's number
(130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from types import FrameType

from hopbench.cli import commands
from hopbench.cli.parser import build_parser
from hopbench.errors import HopbenchError

__all__ = ["build_parser", "main"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": commands.validate,
    "run": commands.run,
    "compare": commands.compare,
    "render": commands.render,
    "agent": commands.agent,
    "report": commands.report,
    "diff": commands.diff,
}


class Stopped:
    """The signal that stopped the command (SIGINT unless SIGTERM or SIGHUP came first)."""

    received = signal.SIGINT

    @classmethod
    def like_ctrl_c(cls, signum: int, frame: FrameType | None) -> None:
        """Stop as Ctrl-C does: within asyncio.run, its SIGINT handler cancels the main
        task (so every cleanup runs) and then raises KeyboardInterrupt; elsewhere, or
        when SIGINT is ignored (a background job of a script), KeyboardInterrupt now."""
        if cls.received == signal.SIGINT:
            cls.received = signal.Signals(signum)
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint):
            on_sigint(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    @classmethod
    def install(cls) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup keeps SIGHUP ignored
                signal.signal(sig, cls.like_ctrl_c)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    Stopped.install()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # it logs a failed connect that hopbench reports in words
        logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe can be told apart
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return 128 + signal.SIGPIPE  # as a program killed by SIGPIPE: `... | head` is fine
    except HopbenchError as exc:
        print(f"hopbench: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(
            f"hopbench: interrupted by {Stopped.received.name}; every process it started has "
            "been stopped and its queues, exchanges and topics deleted",
            file=sys.stderr,
        )
        return 128 + Stopped.received
    return status


def _stdout_closed() -> bool:
    """Whether standard output's reader went away (``hopbench validate ... | head``);
    if so, it is pointed at /dev/null, so that the exit flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (ValueError, OSError):
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poll.poll(0)):
        return False  # the broken pipe was another one (a socket): not ours to hide
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return True
