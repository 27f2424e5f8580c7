"""The hopbench command line: `validate` a topology, `run` it, `compare` a suite,
`report`, `diff` two results, `render` deployment files, serve as an `agent`.

``main`` maps every hopbench error to its message and exit status: never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        print("hopbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
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
