"""Measurement you can defend: the knee search converges on a known capacity,
repeats report their spread, several load workers merge into one exact result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hopbench.results.schema import ACHIEVED_RATE_FLOOR
from tests.conftest import TOPOLOGIES

pytestmark = pytest.mark.integration


def hopbench(out: Path, *argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", *argv, "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return data


def test_find_max_finds_a_fixed_capacity_within_ten_percent(tmp_path: Path) -> None:
    # 20 ms of work per message on one replica: at most 50 messages/s. The true capacity is
    # 1 / (20 ms + HTTP's own cost per request, 0.3-1 ms on a 2-core machine): 48-49.5/s,
    # so the knee lies in 45-50/s with a margin for a slow machine. (With 5 ms of work the
    # same cost is 6-10 % of the message and the knee fell to 169-188/s of 200.) A search
    # that another process disturbed is searched again once, after a pause.
    for attempt in (1, 2):
        out = tmp_path / str(attempt)
        data = hopbench(out, str(TOPOLOGIES / "fixed-capacity.yaml"), "--find-max", "--rate",
                        "12.5", "--set", "services.busy.work.cpu_us=20000", "--duration", "3",
                        "--warmup", "1", "--grace", "2")  # fmt: skip
        (knee,) = data["max_sustainable"]
        assert any(not p["passed"] for p in knee["evidence"])  # it found where it breaks
        if 45 <= knee["max_sustainable_rate"] <= 50 / ACHIEVED_RATE_FLOOR:
            break
        steps = [(p["rate"], p["passed"], p["reason"]) for p in knee["evidence"]]
        print(f"search {attempt}: knee at {knee['max_sustainable_rate']}/s: {steps}")
        time.sleep(5)
    assert 45 <= knee["max_sustainable_rate"] <= 50 / ACHIEVED_RATE_FLOOR
    evidence = knee["evidence"]
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
    for attempt in (1, 2):  # the p50s are compared once more if a moment disturbed one
        runs = {}
        for workers in (1, 2):
            data = hopbench(tmp_path / f"{attempt}-{workers}", str(TOPOLOGIES / "chain.yaml"),
                            "--mode", "grpc", "--rate", "400", "--duration", "3", "--warmup",
                            "1", "--workers", str(workers))  # fmt: skip
            (runs[workers],) = data["runs"]
        for run in runs.values():  # exact, every attempt
            assert run["sent"] == 1200
            assert run["completed"] == run["sent"]
            assert run["latency_us"]["count"] == run["completed"]  # every sample merged
            assert sum(p["sent"] for p in run["timeline"] if p["t_s"] >= 0) == run["sent"]
        assert runs[2]["workers"] == 2
        ratio = runs[2]["latency_us"]["p50"] / runs[1]["latency_us"]["p50"]
        if 0.25 < ratio < 4:
            break
        print(f"attempt {attempt}: p50 with 2 workers / with 1 = {ratio:.2f}")
    # two load-worker processes share the 2 cores with both services: clean-clone runs
    # measured 2.2 and 2.6 for 2 workers / 1 on a quiet machine, and 0.06 once
    assert 0.25 < ratio < 4, ratio


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
