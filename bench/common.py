"""What the benchmarks share: a one-hop topology, a run through the real
orchestrator, and writing a section of bench/RESULTS.md with the command that made it."""

from __future__ import annotations

import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hopbench.config.faults import Pause
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.topology import Topology
from hopbench.results.schema import RunResult
from hopbench.run.orchestrator import RunRequest, run_topology

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def one_hop(mode: str, cpu_us: int = 0) -> Topology:
    """loadgen -> echo: the smallest flow a mode can carry."""
    return Topology.from_dict(
        {
            "name": "one-hop",
            "services": {"echo": {"work": {"cpu_us": cpu_us, "reply_bytes": 100}}},
            "edges": [{"from": "loadgen", "to": "echo", "mode": mode}],
        }
    )


async def run(
    topology: Topology,
    load: LoadSpec,
    *,
    pauses: list[Pause] | None = None,
    settings: Settings | None = None,
) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="hopbench-bench-") as out:
        return await run_topology(
            RunRequest(
                topology=topology,
                load=load,
                out_dir=Path(out),
                settings=settings or Settings(),
                pauses=pauses or [],
            )
        )


def write_section(title: str, body: str) -> None:
    """Replace (or add) one '## title' section of RESULTS.md, stamped with the command."""
    command = "make bench  # or: .venv/bin/python -m bench." + Path(sys.argv[0]).stem
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {title}\n\nMeasured {stamp} with `{command}`.\n\n{body.strip()}\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text + "\n" + section
    RESULTS.write_text(re.sub(r"\n{3,}", "\n\n", text))
    print(section)
