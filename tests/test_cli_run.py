"""`hopbench run` end to end: real processes, real brokers, exact counts, and
nothing left running afterwards, also when interrupted with Ctrl-C."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli import hopbench
from tests.conftest import TOPOLOGIES, reap

pytestmark = pytest.mark.integration


def leftovers(out: Path) -> list[str]:
    """Processes of these runs still alive: children name the run dir, Tansu its run id."""
    marks = [str(out)] + [f"hopbench-{d.name.rsplit('-', 1)[-1]}" for d in out.glob("runs/*")]
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # the test's own process names the folder too (its tmp_path is under
        # pytest-of-USER, which every child's command line also holds): leave out by pid
        if any(mark in cmdline for mark in marks) and int(proc.name) != os.getpid():
            found.append(cmdline)
    return found


def runs(out: Path) -> list[dict[str, Any]]:
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "hopbench.results/3"
    result: list[dict[str, Any]] = data["runs"]
    return result


def test_chain_over_every_mode_counts_every_message(tmp_path: Path, rabbitmq_url: str) -> None:
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "all", "--rate", "200",
                    "--duration", "3", "--warmup", "1", "--out", str(tmp_path),
                    "--rabbitmq-url", rabbitmq_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    results = runs(tmp_path)
    assert [r["mode"] for r in results] == ["http", "grpc", "kafka", "rabbitmq"]
    for run in results:
        assert run["sent"] == 600, run["mode"]
        assert run["completed"] == run["expected"] == run["sent"], run["mode"]
        assert (run["lost"], run["duplicated"], run["errors"]) == (0, 0, 0), run["mode"]
        # plausible: 0.1-200 ms (request-reply over Tansu: four produce-fetch legs)
        assert 100 < run["latency_us"]["p50"] < 200_000, run["mode"]
        assert run["latency_us"]["count"] == run["completed"]
        assert {e["mode"] for e in run["edges"]} == {run["mode"]}
        assert run["achieved_rate"] == pytest.approx(200, rel=0.02)
    assert results[2]["brokers"]["kafka"]["settings"]["fetch_max_wait_ms"] == 5
    assert results[3]["brokers"]["rabbitmq"]["settings"]["publisher_confirms"] is False
    # --mode keeps what the chain measures: the round trip, over every mode
    assert {e["pattern"] for r in results for e in r["edges"]} == {"request-reply"}
    assert all(r["status"] == "ok" and r["failure"] is None for r in results)
    for mode in ("http", "grpc", "kafka", "rabbitmq"):
        assert f"\n  {mode} " in done.stdout  # its row in the summary
    assert leftovers(tmp_path) == []


def test_fanout_over_kafka_every_subscriber_gets_every_message(tmp_path: Path) -> None:
    done = hopbench("run", str(TOPOLOGIES / "fanout.yaml"), "--rate", "200", "--duration", "2",
                    "--warmup", "1", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = runs(tmp_path)
    assert run["expected"] == 3 * run["sent"] == run["completed"]
    assert {r["route"]: r["completed"] for r in run["routes"]} == {
        "loadgen>publisher>billing": run["sent"],
        "loadgen>publisher>shipping": run["sent"],
        "loadgen>publisher>analytics": run["sent"],
    }
    analytics = next(r for r in run["routes"] if r["route"].endswith("analytics"))
    assert analytics["recorded_by"] == ["analytics/0", "analytics/1"]
    assert leftovers(tmp_path) == []
    # the live line for the first measured second, merged across the five sinks
    live = re.search(r"^  +1 s: sent (\d+)/s, completions (\d+)/s, p99 ([\d.]+) ms$",
                     done.stderr, re.M)  # fmt: skip
    assert live, done.stderr
    assert int(live[1]) == 200
    assert 450 <= int(live[2]) <= 750  # three subscribers each
    assert 0 < float(live[3]) < 1000


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "chain.yaml"), "--mode",
         "kafka", "--rate", "100", "--duration", "60", "--out", str(tmp_path)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip().startswith("load:"):
                break
        time.sleep(1)
        assert leftovers(tmp_path), "the run should be under way"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert "Traceback" not in proc.stderr.read()
        assert leftovers(tmp_path) == []
    finally:
        reap(proc)


def edge_modes(**modes: str) -> list[str]:
    """--set flags for edges given as source__target=mode."""
    return [f for name, mode in modes.items()
            for f in ("--set", f"edges.{name.replace('__', '->')}.mode={mode}")]  # fmt: skip


ASSIGNMENTS = {
    "as-written": [],  # HTTP in, Kafka request, Kafka event, RabbitMQ job
    "brokers-swapped": edge_modes(gateway__orders="rabbitmq", orders__payments="kafka"),
    "all-grpc": ["--mode", "grpc"],  # the event: one fire-and-forget call per subscriber
    "grpc-and-rabbitmq-fanout": edge_modes(
        gateway__orders="grpc",
        orders__inventory="rabbitmq",
        orders__billing="rabbitmq",
        orders__notifications="rabbitmq",
    ),
}


@pytest.mark.parametrize("assignment", ASSIGNMENTS.values(), ids=ASSIGNMENTS.keys())
def test_order_hybrid_in_several_mode_assignments_loses_nothing(
    tmp_path: Path, assignment: list[str]
) -> None:
    done = hopbench("run", str(TOPOLOGIES / "order-hybrid.yaml"), *assignment, "--rate", "150",
                    "--duration", "2", "--warmup", "1", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = runs(tmp_path)
    assert run["lost"] == run["duplicated"] == run["errors"] == 0
    assert run["completed"] == run["expected"] == 4 * run["sent"]
    assert {r["route"] for r in run["routes"]} == {
        "loadgen (reply)", "loadgen>gateway>orders>inventory",
        "loadgen>gateway>orders>billing", "loadgen>gateway>orders>notifications",
    }  # fmt: skip
    modes = {e["name"]: e["mode"] for e in run["edges"]}
    if assignment[:1] == ["--mode"]:
        assert set(modes.values()) == {"grpc"}
    for flag, value in itertools.pairwise(assignment):
        if flag == "--set":
            name, mode = value.removeprefix("edges.").split(".mode=")
            assert modes[name] == mode
    for route in run["routes"]:  # one block per route in the summary
        assert f"route {route['route']}" in done.stdout
    assert leftovers(tmp_path) == []
