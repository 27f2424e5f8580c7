"""The hopbench command line: `validate` a topology, `run` it, `compare` a suite,
`report`, `diff` two results, `render` deployment files, serve as an `agent`.

``main`` maps every hopbench error to its message and exit status: never a traceback.
"""

from __future__ import annotations

import argparse
import logging
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
    except HopbenchError as exc:
        print(f"hopbench: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("hopbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    return status
