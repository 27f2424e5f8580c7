"""Agents on another network host: a network namespace on a bridge (Linux, root,
iproute2), so requests really cross an interface between two addresses, as
between containers or machines. Skips where that is not allowed."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest

from tests.cli import hopbench
from tests.conftest import TOPOLOGIES
from tests.namespaces import Network, wait_healthy
from tests.test_cli_run import runs

pytestmark = pytest.mark.integration


def test_services_on_another_network_host(
    tmp_path: Path, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    # agents beyond loopback need the orchestrator's token: both ends read it here
    monkeypatch.setenv("HOPBENCH_AGENT_TOKEN", secrets.token_hex(32))
    network.create(["far"])
    network.publish({})
    for k in range(2):
        network.start("far", [sys.executable, "-m", "hopbench", "agent", "--listen",
                               f"0.0.0.0:{7070 + k}", "--http-port", str(8000 + k),
                               "--grpc-port", str(9000 + k)])  # fmt: skip
        wait_healthy(network, "far", [sys.executable, "-c", "import socket; "
                     f"socket.create_connection(('127.0.0.1', {7070 + k}), 2)"])  # fmt: skip
    far = network.address["far"]
    worker, gateway = f"{far}:7070", f"{far}:7071"
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
    assert spec["endpoints"]["http"]["worker"] == [f"{far}:8000"]

    # a broker only on our loopback is out of their reach: said before anything runs
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "kafka", "--duration", "1",
                    "--agents", agents, "--out", str(tmp_path / "out2"))  # fmt: skip
    assert done.returncode == 1
    assert f"agents such as {gateway} cannot reach a broker at 127.0.0.1:" in done.stderr
    assert "pass --kafka-bootstrap" in done.stderr
