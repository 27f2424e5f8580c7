"""Failures never win, and costs are counted the same way for every mode: a run
whose every message failed is marked failed with its cause, never ranked, and makes
the command exit 1 while everything measured is still written; a broker edge keeps
the pattern it had; the RabbitMQ server's own CPU is counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hopbench.errors import ConfigError
from hopbench.measure.usage import Usage
from hopbench.results.build import Costs, cpu_ms_per_1000, process_result
from hopbench.results.schema import Results
from tests.cli import hopbench
from tests.conftest import TOPOLOGIES, reap

SCHEMA = "hopbench.results/3"


def runs_of(out: Path) -> list[dict[str, Any]]:
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == SCHEMA
    runs: list[dict[str, Any]] = data["runs"]
    return runs


@pytest.mark.integration
def test_a_run_whose_every_message_failed_is_failed_unranked_and_exits_1(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "rabbitmq,grpc",
                    "--payload", "10000000", "--rate", "5", "--duration", "2", "--warmup", "0",
                    "--rabbitmq-url", rabbitmq_url, "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    rabbit, grpc = runs_of(tmp_path)  # everything measured is written, the failure too
    # gRPC refuses a 10 MB message (its default limit is 4 MiB): the cause, in words,
    # from the process that saw it
    assert (grpc["status"], grpc["sent"], grpc["completed"], grpc["errors"]) == (
        "failed",
        10,
        0,
        10,
    )
    assert "loadgen/0" in grpc["failure"]
    assert "larger than max" in grpc["failure"]
    loadgen = next(p for p in grpc["processes"] if p["name"] == "loadgen/0")
    assert "RESOURCE_EXHAUSTED" in loadgen["first_error"]
    assert f"run {grpc['run_id']} failed" in done.stderr
    # RabbitMQ delivered all ten, as a round trip: --mode kept HTTP's request-reply
    assert (rabbit["status"], rabbit["completed"], rabbit["failure"]) == ("ok", 10, None)
    assert {e["pattern"] for e in rabbit["edges"]} == {"request-reply"}
    assert [r["measures"] for r in rabbit["routes"]] == ["round trip"]
    # the RabbitMQ server's own CPU, found by the port it listens on, in the window
    server = next(p for p in rabbit["processes"] if p["name"] == "rabbitmq-server")
    assert server["cpu_s"] is not None
    assert server["cpu_s"] > 0
    # measured, or not measured because a process's window CPU was not read: never 0
    unread = [p["name"] for p in rabbit["processes"] if p["cpu_s"] is None]
    assert (rabbit["cpu_ms_per_1000"] is None) == bool(unread), unread
    assert rabbit["cpu_ms_per_1000"] is None or rabbit["cpu_ms_per_1000"] > 0
    assert rabbit["brokers"]["rabbitmq"]["label"].startswith("rabbitmq (")
    # the summary ranks RabbitMQ alone and shows gRPC failed, with its cause
    summary = done.stdout[done.stdout.index("summary:") :]
    rabbit_row = next(
        line for line in summary.splitlines() if line.lstrip().startswith("rabbitmq (")
    )
    grpc_row = next(line for line in summary.splitlines() if line.lstrip().startswith("grpc "))
    assert "#1" in rabbit_row
    assert "failed" in grpc_row
    assert "#" not in grpc_row
    assert "larger than max" in summary


@pytest.mark.integration
def test_cpu_per_message_counts_only_the_measured_window(tmp_path: Path) -> None:
    """The same system at 200/s and 800/s: CPU per 1,000 messages inside the window
    agrees within a factor of three. A message costs more at a low rate (fixed costs
    per second: event-loop wake-ups, timers; fewer messages per wake-up), and on a
    shared 2-core machine 800/s may be past the knee, so the bound is loose; what it
    holds is that idle time outside the window is not counted."""
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--rates", "200,800",
                    "--duration", "3", "--warmup", "1", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    slow, fast = runs_of(tmp_path)
    for run in (slow, fast):
        assert all(p["cpu_s"] is not None for p in run["processes"])
        # the window is a part of the run: never more than from ready to the end
        assert all(p["cpu_s"] <= p["cpu_run_s"] + 0.02 for p in run["processes"])
    ratio = slow["cpu_ms_per_1000"] / fast["cpu_ms_per_1000"]
    assert 1 / 3 < ratio < 3, (slow["cpu_ms_per_1000"], fast["cpu_ms_per_1000"])


def test_cpu_counts_the_window_and_is_never_a_silent_zero() -> None:
    ready, start, end, last = (Usage(cpu, 50.0) for cpu in (1.0, 3.0, 5.5, 9.0))
    row = process_result("gateway/0", Costs(ready, start, end, last))
    assert (row.cpu_s, row.cpu_run_s) == (2.5, 8.0)
    remote = process_result("rabbitmq-server", Costs(ready, None, None, last), host="10.0.0.9")
    assert remote.cpu_s is None  # not measured, shown as n/m
    assert cpu_ms_per_1000([row], 1000) == 2500.0
    assert cpu_ms_per_1000([row, remote], 1000) is None  # a partial sum would flatter it
    assert cpu_ms_per_1000([row], 0) is None


def test_results_of_an_older_schema_are_refused_with_the_fix(tmp_path: Path) -> None:
    old = tmp_path / "results.json"
    old.write_text(json.dumps({"schema": "hopbench.results/1", "runs": []}))
    with pytest.raises(ConfigError) as info:
        Results.read(old)
    assert str(info.value).startswith(f"{old}: results of schema 'hopbench.results/1'")
    assert SCHEMA in str(info.value)
    assert "another --out" in str(info.value)
    done = hopbench("report", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"hopbench: error: {old}: results of schema")
    assert "Traceback" not in done.stderr


def _pid_of(marks: list[str]) -> int | None:
    """The process whose command line holds every mark (one this test started)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(mark in cmdline for mark in marks):
            return int(proc.name)
    return None


@pytest.mark.integration
def test_a_service_that_dies_fails_the_run_and_what_was_measured_is_kept(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "chain.yaml"),
            "--pattern", "fire-and-forget", "--rate", "200", "--duration", "4", "--warmup", "1",
            "--grace", "1", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip().startswith("load:"):
                break
        time.sleep(2)
        pid = _pid_of(["--service worker", str(tmp_path)])
        assert pid is not None, "the worker should be running"
        os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        reap(proc)
    assert proc.returncode == 1
    assert "Traceback" not in stderr
    (run,) = runs_of(tmp_path)
    assert run["status"] == "failed"
    assert run["failure"].startswith("worker/0 died: was killed by SIGKILL")
    worker = next(p for p in run["processes"] if p["name"] == "worker/0")
    assert worker["died"].startswith("was killed by SIGKILL")
    # what the others measured is kept; what the dead one had recorded counts as lost
    assert run["sent"] == 800
    assert run["lost"] > 0
    assert any("count as lost" in note for note in run["notes"])
