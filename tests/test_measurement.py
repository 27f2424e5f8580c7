"""Measurement you can defend: the knee search converges on a known capacity,
repeats report their spread, several load workers merge into one exact result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOPOLOGIES

pytestmark = pytest.mark.integration


def hopbench(out: Path, *argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", *argv, "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def test_find_max_finds_a_fixed_capacity_within_ten_percent(tmp_path: Path) -> None:
    # 5 ms of CPU per message on one replica: at most 200 messages/s
    data = hopbench(tmp_path, str(TOPOLOGIES / "fixed-capacity.yaml"), "--find-max",
                    "--rate", "50", "--duration", "3", "--warmup", "1", "--grace", "2")  # fmt: skip
    (knee,) = data["max_sustainable"]
    assert 180 <= knee["max_sustainable_rate"] <= 220
    evidence = knee["evidence"]
    assert any(not p["passed"] for p in evidence)  # it found where it breaks
    assert {p["run_id"] for p in evidence} == {r["run_id"] for r in data["runs"]}
    assert max(p["rate"] for p in evidence if p["passed"]) == knee["max_sustainable_rate"]


def test_repeats_report_median_and_spread(tmp_path: Path) -> None:
    data = hopbench(tmp_path, str(TOPOLOGIES / "chain.yaml"), "--mode", "http", "--rates",
                    "100,200", "--repeat", "2", "--duration", "1", "--warmup", "0.5")  # fmt: skip
    assert len(data["runs"]) == 4
    cells = {c["cell"]: c for c in data["cells"]}
    assert set(cells) == {
        "chain http request-reply 100B gatewayx1 workerx1 100/s",
        "chain http request-reply 100B gatewayx1 workerx1 200/s",
    }
    assert {c["key"]["load"] for c in cells.values()} == {"100/s", "200/s"}
    for cell in cells.values():
        assert cell["repeats"] == 2
        p50 = cell["metrics"]["p50_us"]
        assert p50["min"] <= p50["median"] <= p50["max"]


def test_one_and_two_workers_agree_and_merge_every_sample(tmp_path: Path) -> None:
    runs = {}
    for workers in (1, 2):
        data = hopbench(tmp_path / str(workers), str(TOPOLOGIES / "chain.yaml"), "--mode", "grpc",
                        "--rate", "400", "--duration", "3", "--warmup", "1",
                        "--workers", str(workers))  # fmt: skip
        (runs[workers],) = data["runs"]
    for run in runs.values():
        assert run["sent"] == 1200
        assert run["completed"] == run["sent"]
        assert run["latency_us"]["count"] == run["completed"]  # every sample merged
        assert sum(p["sent"] for p in run["timeline"] if p["t_s"] >= 0) == run["sent"]
    assert runs[2]["workers"] == 2
    ratio = runs[2]["latency_us"]["p50"] / runs[1]["latency_us"]["p50"]
    assert 0.5 < ratio < 2, ratio  # within the noise of a shared 2-core machine


def test_a_paused_service_shows_in_p99_and_the_timeline(tmp_path: Path) -> None:
    data = hopbench(tmp_path, str(TOPOLOGIES / "chain.yaml"), "--mode", "http", "--rate",
                    "200", "--duration", "4", "--warmup", "1", "--pause", "worker/0@1:1",
                    "--max-in-flight", "32")  # fmt: skip
    (run,) = data["runs"]
    assert run["completed"] == run["sent"] == 800
    assert run["latency_us"]["p99"] > 700_000  # ~a tenth of the schedule fell in the stall
    assert run["service_time_us"]["p90"] * 5 < run["latency_us"]["p90"]  # CO-affected view
    stalled = [p for p in run["timeline"] if p["p99_us"] > 500_000]
    assert stalled
    assert all(1 <= p["t_s"] <= 3 for p in stalled)
    assert "worker/0 was paused for 1 s at t=1 s" in run["notes"]
    assert not run["generator_limited"]  # the in-flight waits are the system pushing back
    assert run["in_flight_waits"] > 0
