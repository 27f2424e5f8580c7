"""The Kubernetes manifests, run without a cluster: every pod becomes a network
namespace, Services become names in every pod's hosts file (a headless Service
resolves to all its pods; an Indexed Job's pod is loadgen-<i>.loadgen), and each
pod runs its container's args. The orchestrator Job starts first and waits for
the agents, the topology comes from the ConfigMap, the load workers are the
Job's pods, and they exit when the orchestrator is done, which completes the Job. Kafka is Tansu in
its own pod; RabbitMQ is left out. Linux, root and iproute2; skips otherwise."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hopbench.brokers.tansu import tansu_binary
from tests.cli import hopbench
from tests.conftest import TOPOLOGIES
from tests.namespaces import Network
from tests.test_cli_run import runs

pytestmark = pytest.mark.integration


Docs = dict[tuple[str, str], dict[str, Any]]


def container_of(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = docs[kind, name]["spec"]["template"]["spec"]["containers"][0]
    return found


def env_of(docs: Docs, kind: str, name: str) -> list[str]:
    """`env NAME=VALUE ...`: the container's environment, its secrets resolved."""
    secret = docs["Secret", "hopbench-secrets"]["stringData"]
    found = ["env"]
    for item in container_of(docs, kind, name).get("env", []):
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "hopbench-secrets"
        found.append(f"{item['name']}={secret[ref['key']]}")
    return found


def test_the_manifests_run_as_written(tmp_path: Path, network: Network) -> None:
    manifest = tmp_path / "k8s.yaml"
    done = hopbench("render", "k8s", str(TOPOLOGIES / "chain.yaml"), "--mode", "http,grpc,kafka",
                    "--set", "services.worker.replicas=2", "--workers", "2", "--out", str(manifest),
                    "--run-args", "--rate 200 --duration 2 --warmup 1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs: dict[tuple[str, str], dict[str, Any]] = {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifest.read_text())
    }

    def container(kind: str, name: str) -> dict[str, Any]:
        return container_of(docs, kind, name)

    def env(kind: str, name: str) -> list[str]:
        return env_of(docs, kind, name)

    pods: dict[str, list[str]] = {}  # Service name -> its pods
    for (kind, name), doc in docs.items():
        if kind == "Deployment" and name != "rabbitmq":
            pods[name] = [f"{name}-{i}" for i in range(doc["spec"]["replicas"])]
    job = docs["Job", "loadgen"]["spec"]
    assert job["completionMode"] == "Indexed"
    workers = [f"loadgen-{i}" for i in range(job["completions"])]
    network.create([p for group in pods.values() for p in group] + workers + ["run"])
    names = {**pods, **{f"{w}.{job['template']['spec']['subdomain']}": [w] for w in workers}}
    network.publish(names)

    topology = tmp_path / "topology.yaml"
    topology.write_text(docs["ConfigMap", "hopbench-topology"]["data"]["topology.yaml"])
    out = tmp_path / "results"
    args = container("Job", "hopbench-run")["args"]
    args = [{"/config/topology.yaml": str(topology), "/results": str(out)}.get(a, a) for a in args]
    orchestrator = network.start(
        "run", [*env("Job", "hopbench-run"), sys.executable, "-m", "hopbench", *args]
    )
    time.sleep(2)  # the orchestrator is up first: it has to wait for the pods

    tansu, _ = tansu_binary()
    kafka_env = {e["name"]: e["value"] for e in container("Deployment", "kafka")["env"]}
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    network.start("kafka-0", [tansu, "broker", "--cluster-id", "k8s", "--listener-url",
                              "tcp://0.0.0.0:9092", "--advertised-listener-url", "tcp://kafka:9092",
                              "--storage-engine", "memory://tansu/"])  # fmt: skip
    for service in ("gateway", "worker"):
        for pod in pods[service]:
            network.start(pod, [*env("Deployment", service), sys.executable, "-m", "hopbench",
                                *container("Deployment", service)["args"]])  # fmt: skip
    worker_args = container("Job", "loadgen")["args"]
    worker_env = env("Job", "loadgen")
    jobs = [
        network.start(w, [*worker_env, sys.executable, "-m", "hopbench", *worker_args])
        for w in workers
    ]

    assert orchestrator.wait(240) == 0, (tmp_path / "run.log").read_text()[-3000:]
    results = runs(out)
    assert [r["mode"] for r in results] == ["http", "grpc", "kafka"]
    for run in results:
        assert run["completed"] == run["sent"] == 400, run["mode"]
        hosts = {p["name"]: p["host"] for p in run["processes"]}
        # the Kafka pod is another host: its row says the broker's CPU is not measured
        broker = next((p for p in run["processes"] if p["name"] == "kafka-broker"), None)
        assert (broker is not None) == (run["mode"] == "kafka"), run["mode"]
        assert broker is None or broker["cpu_s"] is None
        hosts.pop("kafka-broker", None)
        assert sorted(hosts) == ["gateway/0", "loadgen/0", "loadgen/1", "worker/0", "worker/1"]
        assert hosts["loadgen/1"] == "loadgen-1.loadgen:7070"
        worker_ips = {network.address[p] for p in pods["worker"]}
        assert {hosts["worker/0"].split(":")[0], hosts["worker/1"].split(":")[0]} == worker_ips
    # the Indexed Job completes: the orchestrator let every worker pod go, and each exited 0
    assert [job.wait(10) for job in jobs] == [0, 0]
