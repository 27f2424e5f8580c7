"""Agents on another network host: a network namespace joined by a veth pair
(Linux, root, iproute2), so requests really cross an interface between two
addresses, as between containers or machines. Skips where that is not allowed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOPOLOGIES
from tests.test_cli_run import hopbench, runs

pytestmark = pytest.mark.integration


def ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)


@pytest.fixture
def other_host(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """(the namespace's address, the control addresses of two agents running there)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")
    tag = secrets.token_hex(3)
    ns, here, there = f"hb{tag}", f"hb{tag}a", f"hb{tag}b"
    octet = int(tag[:2], 16) % 250 + 2
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    if ip("netns", "add", ns).returncode != 0:
        pytest.skip("this machine does not allow network namespaces")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv in (
            ["link", "add", here, "type", "veth", "peer", "name", there],
            ["link", "set", there, "netns", ns],
            ["addr", "add", f"{host_ip}/24", "dev", here],
            ["link", "set", here, "up"],
            ["netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", there],
            ["netns", "exec", ns, "ip", "link", "set", there, "up"],
            ["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        ):
            done = ip(*argv)
            assert done.returncode == 0, (argv, done.stderr)
        agents = []
        for k in range(2):
            log = tmp_path / f"agent-{k}.log"
            argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "hopbench", "agent",
                    "--listen", f"0.0.0.0:{7070 + k}", "--http-port", str(8000 + k),
                    "--grpc-port", str(9000 + k)]  # fmt: skip
            with log.open("wb") as out:
                procs.append(subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True))
            deadline = time.monotonic() + 30
            while b"control on" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            agents.append(f"{ns_ip}:{7070 + k}")
        yield ns_ip, agents
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        ip("netns", "del", ns)  # takes the veth pair with it
        ip("link", "del", here)


def test_services_on_another_network_host(
    tmp_path: Path, other_host: tuple[str, list[str]]
) -> None:
    ns_ip, (worker, gateway) = other_host
    agents = f"worker/0={worker},gateway/0={gateway}"
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "http,grpc", "--rate", "300",
                    "--duration", "3", "--warmup", "1", "--agents", agents,
                    "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    for run in runs(tmp_path / "out"):
        assert run["completed"] == run["sent"] == 900, run["mode"]
        hosts = {p["name"]: p["host"] for p in run["processes"]}
        assert hosts == {"gateway/0": gateway, "worker/0": worker, "loadgen/0": "local"}
    # the gateway reached the worker at the namespace's address, not over loopback
    (spec_path,) = (tmp_path / "out").glob("runs/chain-http-*/spec.json")
    spec = json.loads(spec_path.read_text())
    assert spec["endpoints"]["http"]["worker"] == [f"{ns_ip}:8000"]

    # a broker only on our loopback is out of their reach: said before anything runs
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "kafka", "--duration", "1",
                    "--agents", agents, "--out", str(tmp_path / "out2"))  # fmt: skip
    assert done.returncode == 1
    assert f"agents such as {gateway} cannot reach a broker at 127.0.0.1:" in done.stderr
    assert "pass --kafka-bootstrap" in done.stderr
