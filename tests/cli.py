"""The hopbench command as the tests run it: a subprocess, like a user's shell."""

from __future__ import annotations

import subprocess
import sys


def hopbench(
    *argv: str, timeout: float = 300, report: bool = False
) -> subprocess.CompletedProcess[str]:
    """`hopbench ARGV`; a run writes report.html only when the test reads it (its charts
    take seconds of CPU per command, and the report has tests of its own)."""
    quiet = ["--no-report"] if argv[:1] == ("run",) and not report else []
    return subprocess.run(
        [sys.executable, "-m", "hopbench", *argv, *quiet],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
