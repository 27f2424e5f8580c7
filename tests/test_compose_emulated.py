"""The committed docker-compose.yml, run without Docker: every container becomes a
network namespace on one bridge, with the compose service names in its
/etc/hosts (``ip netns exec`` mounts /etc/netns/NAME/hosts there), running the
command the compose file gives it: agents on 7070/8000/9000 each, the
orchestrator's exact command line, Kafka reached as kafka:9092. Kafka is Tansu
listening in its own namespace (not the apache/kafka image) and RabbitMQ is left
out (the local server listens on loopback only); the rest is the file as written.
Linux, root and iproute2; skips otherwise."""

from __future__ import annotations

import re
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hopbench.brokers.tansu import tansu_binary
from tests.conftest import ROOT
from tests.namespaces import Network, wait_healthy
from tests.test_cli_run import runs

pytestmark = pytest.mark.integration
NETNS = Path("/etc/netns")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error}, which is all the file uses."""

    def value(m: re.Match[str]) -> str:
        if m[2] == "?":
            assert env.get(m[1]), f"compose would stop: {m[1]} {m[3]}"
            return env[m[1]]
        return env.get(m[1]) or m[3]

    return re.sub(r"\$\{(\w+):([-?])([^}]*)\}", value, text)


def environment(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    """`env NAME=VALUE ...`: the container's environment as compose gives it."""
    given = service.get("environment", {})
    return ["env", *(f"{k}={interpolate(v, env)}" for k, v in given.items())]


def test_the_compose_file_runs_as_written(network: Network, tmp_path: Path) -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    agents = [n for n, s in services.items() if s.get("command") == ["agent"]]
    assert agents == ["gateway-0", "worker-0"]
    network.create(["kafka", *agents, "hopbench"])
    network.publish({name: [name] for name in network.namespaces})

    tansu, _ = tansu_binary()
    network.start("kafka", [tansu, "broker", "--cluster-id", "compose", "--listener-url",
                            "tcp://0.0.0.0:9092", "--advertised-listener-url", "tcp://kafka:9092",
                            "--storage-engine", "memory://tansu/"])  # fmt: skip
    # what `hopbench render compose` writes into .env, where compose reads it
    dotenv = {"HOPBENCH_AGENT_TOKEN": secrets.token_hex(32), "HOPBENCH_RABBITMQ_PASSWORD": "x"}
    for name in agents:  # the image's entrypoint is `hopbench`
        network.start(name, [*environment(services[name], dotenv), sys.executable, "-m",
                             "hopbench", *services[name]["command"]])  # fmt: skip
    # no health check in the agents: the orchestrator waits for them (--agents-wait)
    assert all("healthcheck" not in services[name] for name in agents)
    wait_healthy(network, "kafka", [sys.executable, "-c",
                 "import socket; socket.create_connection(('kafka', 9092), 2)"])  # fmt: skip

    orchestrator = services["hopbench"]
    mounts = dict(v.split(":")[:2][::-1] for v in orchestrator["volumes"])
    assert mounts == {"/config/topology.yaml": "./topologies/chain.yaml", "/results": "./results"}
    env = {"HOPBENCH_ARGS": "--mode http,grpc,kafka --rate 200 --duration 2 --warmup 1", **dotenv}
    argv = shlex.split(interpolate(orchestrator["command"], env))
    out = tmp_path / "results"
    argv = [
        {"/config/topology.yaml": str(ROOT / "topologies/chain.yaml"), "/results": str(out)}.get(
            a, a
        )
        for a in argv
    ]
    orchestrator_env = environment(orchestrator, dotenv)
    done = network.run(
        "hopbench", [*orchestrator_env, sys.executable, "-m", "hopbench", *argv], timeout=300
    )
    assert done.returncode == 0, done.stderr
    results = runs(out)
    assert [r["mode"] for r in results] == ["http", "grpc", "kafka"]
    for run in results:
        assert run["completed"] == run["sent"] == 400, run["mode"]
        hosts = {p["name"]: p["host"] for p in run["processes"]}
        assert hosts["gateway/0"] == "gateway-0:7070"
        assert hosts["worker/0"] == "worker-0:7070"
    assert results[2]["brokers"]["kafka"]["bootstrap"] == "kafka:9092"
    # without HOPBENCH_ARGS, the rendered default: every mode
    assert interpolate(orchestrator["command"], {}).endswith("--out /results --mode all")
    # the agents would not have served a stranger: they had a token, beyond loopback
    for name in agents:
        assert "token required" in (tmp_path / f"{name}.log").read_text()
