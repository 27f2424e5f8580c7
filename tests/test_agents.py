"""Runs whose processes are agents (`hopbench agent`) reached over TCP, as in
compose or Kubernetes: the same results as local children, one agent serving
run after run, and clocks aligned when an agent's clock is off by seconds."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopbench.brokers.procs import free_port
from hopbench.config.deployment import Placement, addresses
from hopbench.errors import ConfigError
from tests.cli import hopbench
from tests.conftest import TOPOLOGIES
from tests.test_cli_run import runs


class Agents:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, skew_s: float = 0.0, *flags: str) -> str:
        port = free_port()
        env = {**os.environ, "HOPBENCH_TEST_CLOCK_SKEW_NS": str(int(skew_s * 1e9))}
        # the RabbitMQ password never travels to agents: they have it from their environment
        env.setdefault("HOPBENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
        argv = [sys.executable, "-m", "hopbench", "agent", "--listen", f"127.0.0.1:{port}",
                "--http-port", str(free_port()), "--grpc-port", str(free_port()),
                *flags]  # fmt: skip
        with (self.tmp / f"agent-{port}.log").open("wb") as log:
            self.procs.append(
                subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
            )
        deadline = time.monotonic() + 30
        while b"control on" not in (self.tmp / f"agent-{port}.log").read_bytes():
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.05)
        return f"127.0.0.1:{port}"

    def stop(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        statuses = []
        for proc in self.procs:
            try:
                statuses.append(proc.wait(10))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                statuses.append(proc.wait())
        return statuses


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    pool = Agents(tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.mark.integration
def test_agents_with_skewed_clocks_serve_one_run_after_another(
    tmp_path: Path, agents: Agents, rabbitmq_url: str
) -> None:
    # gateway on our clock, worker 7 s ahead, the load worker 3 s behind: without
    # the measured offsets, one-way latencies to the worker would read about 10 s
    gateway, worker, loadgen = agents.start(), agents.start(skew_s=7), agents.start(skew_s=-3)
    out = tmp_path / "out"
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "grpc,kafka,rabbitmq",
                    "--rate", "200", "--duration", "3", "--warmup", "1", "--out", str(out),
                    "--rabbitmq-url", rabbitmq_url,
                    "--agents", f"gateway/0={gateway},worker/0={worker}",
                    "--worker-agents", f"loadgen/0={loadgen}", report=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = runs(out)
    assert [r["mode"] for r in results] == ["grpc", "kafka", "rabbitmq"]
    for run in results:
        assert run["completed"] == run["expected"] == run["sent"] == 600, run["mode"]
        assert run["lost"] == 0
        assert 0 < run["latency_us"]["p50"] < 200_000, run["mode"]  # not 10 s, not negative
        clocks = {p["name"]: p["clock"] for p in run["processes"] if p["clock"]}
        assert clocks["gateway/0"]["same_host"] is True
        assert clocks["gateway/0"]["applied_offset_us"] == 0
        for name, skew_us in (("worker/0", 7e6), ("loadgen/0", -3e6)):
            assert clocks[name]["same_host"] is False
            error = abs(clocks[name]["applied_offset_us"] - skew_us)
            assert error <= clocks[name]["uncertainty_us"] + 1, (name, clocks[name])
        hosts = {p["name"]: p["host"] for p in run["processes"]}
        assert hosts["worker/0"] == worker
        machines = {p["name"]: p["machine"] for p in run["processes"]}
        assert machines["worker/0"]["hostname"] == socket.gethostname()
        assert any("other hosts" in note for note in run["notes"])
    report = (out / "report.html").read_text()
    offset = r"clock offset \+[67],\d{3},\d{3} ± [\d.,]+ µs"  # about +7 s, three figures
    assert re.search(rf"worker/0 at 127\.0\.0\.1:\d+ \([^)]+\), {offset}", report)
    assert agents.stop() == [0, 0, 0]  # each served all three runs and ended on SIGTERM


def test_missing_or_busy_agents_are_clear_errors(tmp_path: Path, agents: Agents) -> None:
    template = f"{{service}}-{{replica}}:{free_port()}"
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--duration", "1", "--warmup", "0",
                    "--out", str(tmp_path), "--agents", template)  # fmt: skip
    assert done.returncode == 1
    assert "gateway/0: no hopbench agent answers at gateway-0:" in done.stderr
    assert "Traceback" not in done.stderr

    one = agents.start()  # one agent cannot be two processes
    both = f"gateway/0={one},worker/0={one}"
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--duration", "1", "--warmup", "0",
                    "--out", str(tmp_path), "--agents", both)  # fmt: skip
    assert done.returncode == 1
    assert f"worker/0 (agent at {one}) reported an error: this agent is serving another" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_placement_templates() -> None:
    assert addresses("{service}-{replica}:7070", "worker", 2) == ["worker-0:7070", "worker-1:7070"]
    assert addresses("127.0.0.{service}:7070", "1", 1) == ["127.0.0.1:7070"]  # via DNS
    assert addresses("w/0=h:1,w/1=g:2", "w", 2) == ["h:1", "g:2"]
    with pytest.raises(ConfigError, match="no address for w/1"):
        addresses("w/0=h:1", "w", 2)
    with pytest.raises(ConfigError, match="address template"):
        Placement(services="workers:7070")
    with pytest.raises(ConfigError, match=r"only \{service\} and \{replica\}"):
        Placement(services="{service}-{host}:7070")


def probe(port: int) -> None:
    """What a Kubernetes or compose health check does: connect, read the hello, go."""
    with socket.create_connection(("127.0.0.1", port), 2) as sock:
        assert sock.recv(4096).startswith(b'{"type": "hello"')


@pytest.mark.parametrize("role", ["load worker", "service"])
def test_agents_exit_when_done_and_probes_do_not_keep_them(
    tmp_path: Path, role: str, agents: Agents
) -> None:
    """A load worker agent is told to exit when the orchestrator is done (a Job
    completes); any agent with --exit-idle exits after that long without a run,
    however many health probes come in (before any run: tests/test_faults_agents.py)."""
    # a load worker may only go because it was told to: its idle limit is far away
    address = agents.start(0.0, "--exit-idle", "60" if role == "load worker" else "8")
    proc, port = agents.procs[-1], int(address.rpartition(":")[2])
    log = tmp_path / f"agent-{port}.log"
    for _ in range(10 if role == "load worker" else 0):  # probes never make it busy
        probe(port)
        time.sleep(0.3)
    assert proc.poll() is None
    where = ["--worker-agents", f"loadgen/0={address}"]
    if role == "service":
        where = ["--agents", f"gateway/0={address},worker/0={agents.start()}"]
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--rate", "100", "--duration", "1",
                    "--warmup", "0", *where, "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    ended = time.monotonic()
    while proc.poll() is None and time.monotonic() - ended < 30:
        with contextlib.suppress(OSError):
            probe(port)  # probes after the run do not keep it alive
        time.sleep(0.3)
    assert proc.poll() == 0, log.read_text()
    took = time.monotonic() - ended
    if role == "load worker":
        assert took < 1, took  # told to go: at once
    else:
        assert took < 12, took  # 8 s after its run
    assert "done after 1 run(s)" in log.read_text()
