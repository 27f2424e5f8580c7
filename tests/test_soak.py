"""Soak (make test-slow): a hybrid flow for a minute, well below its capacity on two
cores (300/s is past it: p99 climbs to the 10 s timeout), loses nothing, and no process's
memory grows with the number of messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOPOLOGIES

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(out: Path, seconds: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "order-hybrid.yaml"),
         "--rate", "100", "--duration", str(seconds), "--warmup", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=seconds + 240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (result,) = json.loads((out / "results.json").read_text())["runs"]
    assert result["lost"] == result["duplicated"] == result["errors"] == 0
    assert result["completed"] == 4 * result["sent"]
    assert result["late_replies"] == 0
    return {p["name"]: p["peak_rss_mb"] for p in result["processes"]}


def test_a_minute_of_order_hybrid_loses_nothing_and_holds_memory(tmp_path: Path) -> None:
    short = run(tmp_path / "short", 10)
    long = run(tmp_path / "long", 60)
    for name, rss in long.items():
        if name == "kafka-broker":
            continue  # Tansu keeps every message in memory: it is meant to grow
        assert rss < short[name] * 1.15 + 5, (name, short[name], rss)
