"""`hopbench render`: the committed compose file is the rendered one and parses
with docker-compose; the Kubernetes manifests pass the Kubernetes schemas."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hopbench.cli import build_parser
from hopbench.cli.commands import render_request
from hopbench.render.compose import render_compose
from hopbench.render.k8s import render_k8s
from tests.conftest import ROOT, TOPOLOGIES

K8S_VERSION = "1.30.0"


def render(target: str, *argv: str, out: str) -> tuple[str, str]:
    args = build_parser().parse_args(["render", target, *argv, "--out", out])
    request, command = render_request(args)
    if target == "compose":
        return render_compose(request, Path(out), command), command
    return render_k8s(request, args.workers, command), command


def test_committed_compose_file_is_the_rendered_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    text, command = render("compose", "topologies/chain.yaml", "--mode", "all",
                           out="docker-compose.yml")  # fmt: skip
    committed = (ROOT / "docker-compose.yml").read_text()
    assert committed == text, f"docker-compose.yml is stale: run `{command}`"


SECRETS = {"HOPBENCH_AGENT_TOKEN": "t0ken" * 8, "HOPBENCH_RABBITMQ_PASSWORD": "s3cret"}


def compose_config(path: Path, secrets: dict[str, str] = SECRETS) -> dict[str, Any]:
    """What docker-compose makes of the file, its secrets given as .env would give them."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | secrets
    done = subprocess.run(
        ["docker-compose", "-f", str(path), "config"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def test_compose_secrets_come_from_env_and_are_never_replaced(tmp_path: Path) -> None:
    committed = (ROOT / "docker-compose.yml").read_text()
    assert "hopbench:hopbench@" not in committed  # no password in the file
    config = compose_config(ROOT / "docker-compose.yml")["services"]
    for name in ("gateway-0", "worker-0", "hopbench"):
        env = config[name]["environment"]
        assert env["HOPBENCH_AGENT_TOKEN"] == SECRETS["HOPBENCH_AGENT_TOKEN"]
        assert env["HOPBENCH_RABBITMQ_URL"] == "amqp://hopbench:s3cret@rabbitmq:5672/"
    assert config["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "s3cret"
    assert "--rabbitmq-url" not in config["hopbench"]["command"]
    # a fresh clone has no .env: `docker compose up` works as it is, on fixed defaults
    config = compose_config(ROOT / "docker-compose.yml", {})["services"]
    assert (
        config["hopbench"]["environment"]["HOPBENCH_AGENT_TOKEN"]
        == (config["gateway-0"]["environment"]["HOPBENCH_AGENT_TOKEN"])
    )
    assert config["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "hopbench"

    out = tmp_path / "docker-compose.yml"
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "render", "compose", str(TOPOLOGIES / "chain.yaml"),
         "--rabbitmq-url", "amqp://me:pa55@mq.example:5672/v", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert len(values["HOPBENCH_AGENT_TOKEN"]) == 64
    assert values["HOPBENCH_RABBITMQ_PASSWORD"] == "pa55"
    assert "pa55" not in out.read_text()
    if shutil.which("docker-compose") is not None:
        config = compose_config(out, values)["services"]
        assert config["hopbench"]["environment"]["HOPBENCH_RABBITMQ_URL"] == (
            "amqp://me:pa55@mq.example:5672/v"
        )
    env_file.write_text("HOPBENCH_AGENT_TOKEN=mine-and-long-enough\n")  # the user's own
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "render", "compose", str(TOPOLOGIES / "chain.yaml"),
         "--out", str(out)], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = env_file.read_text().splitlines()
    assert lines[0] == "HOPBENCH_AGENT_TOKEN=mine-and-long-enough"
    assert [line.split("=")[0] for line in lines] == [
        "HOPBENCH_AGENT_TOKEN", "HOPBENCH_RABBITMQ_PASSWORD"
    ]  # fmt: skip


def test_compose_file_parses_and_runs_every_replica(tmp_path: Path) -> None:
    config = compose_config(ROOT / "docker-compose.yml")
    services = config["services"]
    assert set(services) == {"kafka", "rabbitmq", "gateway-0", "worker-0", "hopbench"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    # no probe runs in any container during a run: the orchestrator waits for them all
    assert not [name for name, service in services.items() if "healthcheck" in service]
    orchestrator = services["hopbench"]
    # nothing waits for another to stop: `docker compose stop` stops them all at once
    assert not [name for name, service in services.items() if "depends_on" in service]
    assert "--agents-wait 300 --brokers-wait 300" in orchestrator["command"]
    assert orchestrator["command"].endswith("--mode all")  # HOPBENCH_ARGS unset: the default
    assert services["gateway-0"]["image"] == orchestrator["image"]  # one image for all

    # replicas and brokers given by address, rendered elsewhere, parse too
    out = tmp_path / "compose.yml"
    text, _ = render("compose", str(TOPOLOGIES / "order-hybrid.yaml"),
                     "--set", "services.billing.replicas=2", "--kafka-bootstrap", "k:9092",
                     "--run-args", "--rate 300 --duration 20", out=str(out))  # fmt: skip
    out.write_text(text)
    services = compose_config(out)["services"]
    assert "kafka" not in services
    assert {"billing-0", "billing-1", "rabbitmq"} <= set(services)
    assert "--kafka-bootstrap k:9092" in services["hopbench"]["command"]
    assert services["hopbench"]["command"].endswith(
        "--set services.billing.replicas=2 --rate 300 --duration 20"
    )


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def k8s_manifests(tmp_path: Path, brokers: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """order-hybrid rendered for Kubernetes, schema-checked: the text, and the documents
    by kind and name."""
    extra = ["--kafka-bootstrap", "kafka.infra:9092", "--rabbitmq-url", "amqp://u:pw-4f2a@mq:5672/"]
    given = extra if brokers == "by-url" else []
    text, _ = render("k8s", str(TOPOLOGIES / "order-hybrid.yaml"), "--workers", "3",
                     "--set", "services.billing.replicas=2", *given,
                     out=str(tmp_path / "k.yaml"))  # fmt: skip
    docs = documents(text)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return text, by_kind


@pytest.mark.parametrize("brokers", ["in-cluster", "by-url"])
def test_k8s_manifests_pass_the_schemas(tmp_path: Path, brokers: str) -> None:
    text, by_kind = k8s_manifests(tmp_path, brokers)
    deployments = by_kind["Deployment"]
    assert deployments["billing"]["spec"]["replicas"] == 2
    assert ("kafka" in deployments) == (brokers == "in-cluster")
    for name in deployments:
        assert by_kind["Service"][name]["spec"]["clusterIP"] == "None"  # DNS gives every pod
    loadgen = by_kind["Job"]["loadgen"]["spec"]
    assert loadgen["completionMode"] == "Indexed"
    assert loadgen["completions"] == loadgen["parallelism"] == 3
    assert loadgen["template"]["spec"]["subdomain"] == "loadgen"
    run = by_kind["Job"]["hopbench-run"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert run[:2] == ["run", "/config/topology.yaml"]
    assert run[run.index("--workers") + 1] == "3"
    assert run[run.index("--worker-agents") + 1] == "{service}-{replica}.{service}:7070"
    if brokers == "by-url":
        assert run[run.index("--kafka-bootstrap") + 1] == "kafka.infra:9092"
    # secrets: in a Secret, read from the environment, never in a command line
    secret = by_kind["Secret"]["hopbench-secrets"]["stringData"]
    assert len(secret["agent-token"]) == 64
    url = "amqp://u:pw-4f2a@mq:5672/" if brokers == "by-url" else "amqp://hopbench:"
    assert secret["rabbitmq-url"].startswith(url)
    assert "--rabbitmq-url" not in run
    assert secret["rabbitmq-password"] not in text.split("kind: Secret")[1].split("---", 1)[1]
    pods = [
        d["spec"]["template"]["spec"] for d in [*deployments.values(), *by_kind["Job"].values()]
    ]
    for name, pod in zip([*deployments, *by_kind["Job"]], pods, strict=True):
        env = {
            e["name"]: e.get("valueFrom", {}).get("secretKeyRef")
            for e in pod["containers"][0].get("env", [])
        }
        if name == "rabbitmq":
            assert env["RABBITMQ_DEFAULT_PASS"] == {
                "name": "hopbench-secrets",
                "key": "rabbitmq-password",
            }
        elif name != "kafka":
            assert env["HOPBENCH_AGENT_TOKEN"] == {"name": "hopbench-secrets", "key": "agent-token"}
            assert env["HOPBENCH_RABBITMQ_URL"] == {
                "name": "hopbench-secrets",
                "key": "rabbitmq-url",
            }
    # only the orchestrator reaches the agents' control port
    policy = by_kind["NetworkPolicy"]["hopbench-agents"]["spec"]
    agent_pods = {
        name for name, d in [*deployments.items(), *by_kind["Job"].items()]
        if d["spec"]["template"]["metadata"]["labels"].get("hopbench/agent") == "true"
    }  # fmt: skip
    assert policy["podSelector"]["matchLabels"] == {"hopbench/agent": "true"}
    assert agent_pods == (set(deployments) - {"kafka", "rabbitmq"}) | {"loadgen"}
    assert "billing" in agent_pods
    control, data = policy["ingress"]
    assert control["ports"] == [{"protocol": "TCP", "port": 7070}]
    assert control["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "hopbench-run",
                    "app.kubernetes.io/part-of": "hopbench",
                }
            }
        }
    ]
    assert {p["port"] for p in data["ports"]} == {8000, 9000}
    topology = by_kind["ConfigMap"]["hopbench-topology"]["data"]["topology.yaml"]
    assert topology == (TOPOLOGIES / "order-hybrid.yaml").read_text()


@pytest.mark.parametrize("brokers", ["in-cluster", "by-url"])
def test_the_k8s_run_waits_for_its_brokers_and_leaves_a_reader(
    tmp_path: Path, brokers: str
) -> None:
    text, by_kind = k8s_manifests(tmp_path, brokers)
    pod = by_kind["Job"]["hopbench-run"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 1000  # the image's user writes the claim
    if brokers == "in-cluster":  # the run starts after the brokers answer
        (wait,) = pod["initContainers"]
        assert wait["command"][-2:] == ["kafka:9092", "rabbitmq:5672"]
    else:
        assert "initContainers" not in pod
    reader = by_kind["Pod"]["hopbench-results-reader"]
    assert reader["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "hopbench-results"
    assert reader["metadata"]["labels"]["app.kubernetes.io/component"] == "hopbench-results-reader"
    header = [line for line in text.splitlines() if line.startswith("# kubectl")]
    assert "--timeout=2h job/hopbench-run" in header[1]
    assert header[-1].startswith("# kubectl cp hopbench-results-reader:/results ./results")


def test_the_broker_wait_waits_and_gives_up(tmp_path: Path) -> None:
    from hopbench.render.k8s import WAIT_FOR_PORTS

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        done = subprocess.run([sys.executable, "-c", WAIT_FOR_PORTS, "5", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-c", WAIT_FOR_PORTS, "1", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert f"127.0.0.1:{port} did not answer within 1 s" in done.stderr


def test_a_broken_manifest_fails_the_schema_check() -> None:
    # the validation above can fail: a Deployment without its selector does
    doc = documents(render("k8s", str(TOPOLOGIES / "chain.yaml"), out="k.yaml")[0])
    deployment = next(d for d in doc if d["kind"] == "Deployment")
    del deployment["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_render_errors_name_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((TOPOLOGIES / "chain.yaml").read_text().replace("worker", "big_worker"))
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "render", "compose", str(bad), "--out",
         str(tmp_path / "c.yml")], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "service 'big_worker' cannot be a container or DNS name" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "render", "k8s", str(TOPOLOGIES / "chain.yaml"),
         "--run-args", "--out elsewhere", "--out", str(tmp_path / "k.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--out is set by the rendered file itself" in done.stderr
    assert "Traceback" not in done.stderr
