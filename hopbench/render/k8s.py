"""`hopbench render k8s TOPOLOGY`: Kubernetes manifests for one run.

- A Deployment and a headless Service per service: each pod is a `hopbench
  agent`; the orchestrator resolves the Service to every ready pod (one per
  replica) and drives them as it drives local processes.
- Apache Kafka and RabbitMQ in the cluster, or none of them when
  ``--kafka-bootstrap`` / ``--rabbitmq-url`` name brokers that already exist.
- The load generator: an Indexed Job, one pod per load worker, reached as
  ``loadgen-<index>.loadgen``. Each worker records its latencies in an
  HdrHistogram and sends it, encoded, to the orchestrator, which merges them
  exactly (hopbench.measure.merge) into results.json. The orchestrator tells the
  worker pods to exit when it is done, so the Job completes (or they exit after
  10 idle minutes if it never comes back).
- The orchestrator: a Job that runs `hopbench run` and writes results.json and
  report.html to a PersistentVolumeClaim. An init container first waits for the
  in-cluster brokers' ports, so the run starts after them.
- A reader pod, applied after the run (its own label), that mounts the claim so
  that `kubectl cp` fetches the results; the header gives the steps.
- A Secret with a new agent token and the RabbitMQ URL (and, for a RabbitMQ in
  the cluster, a new password), which every hopbench container reads from its
  environment; no secret is in a command line. A NetworkPolicy admits only the
  orchestrator to the agents' control port, and only hopbench pods to their
  data ports.
"""

from __future__ import annotations

import shlex
from typing import Any

from hopbench.config.deployment import CONTROL_PORT
from hopbench.config.secrets import POSTGRES_URL_ENV, TOKEN_ENV, URL_ENV
from hopbench.config.topology import LOADGEN
from hopbench.render.common import (
    AGENT_PORTS,
    RESULTS_PATH,
    TOPOLOGY_PATH,
    RenderRequest,
    brokers_to_run,
    dump,
    new_token,
)

ORCHESTRATOR = "hopbench-run"
CONFIG = "hopbench-topology"
RESULTS = "hopbench-results"
READER = "hopbench-results-reader"
COMPONENT = "app.kubernetes.io/component"  # the reader's label: applied after the run
RUN_TIMEOUT = "2h"  # kubectl wait's: a default run of every mode takes minutes
BROKER_WAIT_S = 600
# the image's user owns what the orchestrator writes to the claim
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
WAIT_FOR_PORTS = """import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
for address in sys.argv[2:]:
    host, port = address.rsplit(":", 1)
    while True:
        try:
            socket.create_connection((host, int(port)), 2).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"{address} did not answer within {sys.argv[1]} s: {exc}")
            time.sleep(1)
    print(address, "answers", flush=True)
"""
WORKER_IDLE_EXIT_S = 600  # a safety net: the orchestrator tells them when it is done
SECRET = "hopbench-secrets"
AGENT_LABEL = {"hopbench/agent": "true"}  # on the pods of every agent, for the NetworkPolicy
CONFIG_DIR = TOPOLOGY_PATH.rsplit("/", 1)[0]


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "hopbench"}


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _ports(ports: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": name, "containerPort": port} for name, port in ports.items()]


def _headless(name: str, ports: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "clusterIP": "None",  # DNS answers with every ready pod
            "selector": _labels(name),
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports.items()],
        },
    }


def _deployment(
    name: str, replicas: int, container: dict[str, Any], agent: bool = False
) -> dict[str, Any]:
    labels = {**_labels(name), **(AGENT_LABEL if agent else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container]},
            },
        },
    }


def _secret_env(names: dict[str, str]) -> list[dict[str, Any]]:
    """Environment variables from the Secret's keys."""
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
        for name, key in names.items()
    ]


HOPBENCH_ENV = {TOKEN_ENV: "agent-token", URL_ENV: "rabbitmq-url"}
# a broker's own password, from the Secret
_BROKER_SECRETS = {
    "rabbitmq": {"RABBITMQ_DEFAULT_PASS": "rabbitmq-password"},
    "postgres": {"POSTGRES_PASSWORD": "postgres-password"},
}


def _hopbench_env(request: RenderRequest) -> dict[str, str]:
    """The secrets every hopbench container reads: PostgreSQL's URL too, if one is run."""
    if request.needs_postgres:
        return {**HOPBENCH_ENV, POSTGRES_URL_ENV: "postgres-url"}
    return HOPBENCH_ENV


def _secret(request: RenderRequest) -> dict[str, Any]:
    password = request.rabbitmq_password
    data = {
        "agent-token": new_token(),
        "rabbitmq-url": request.rabbitmq(password),
        "rabbitmq-password": password,
    }
    if request.needs_postgres:
        postgres_password = new_token()[:32]
        data["postgres-password"] = postgres_password
        data["postgres-url"] = request.postgres(postgres_password)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "labels": _labels(SECRET)},
        "type": "Opaque",
        "stringData": data,
    }


def _network_policy() -> dict[str, Any]:
    """Agents take control only from the orchestrator; data only from hopbench pods."""
    orchestrator = {"podSelector": {"matchLabels": _labels(ORCHESTRATOR)}}
    hopbench = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "hopbench"}}}
    data = [{"protocol": "TCP", "port": AGENT_PORTS[m]} for m in ("http", "grpc")]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "hopbench-agents", "labels": _labels("hopbench-agents")},
        "spec": {
            "podSelector": {"matchLabels": AGENT_LABEL},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [orchestrator], "ports": [{"protocol": "TCP", "port": CONTROL_PORT}]},
                {"from": [hopbench], "ports": data},
            ],
        },
    }


def _until_open(port: int) -> dict[str, Any]:
    """Ready once the port accepts (a TCP connect by the kubelet, no process in the
    container), tried every 2 s for up to 10 minutes. A startup probe stops at its first
    success, and with no readiness probe nothing probes the pod during a measurement."""
    return {"tcpSocket": {"port": port}, "periodSeconds": 2, "failureThreshold": 300}


def _agent(request: RenderRequest, args: list[str]) -> dict[str, Any]:
    return {
        "name": "agent",
        "image": request.image,
        "args": args,
        "env": _secret_env(_hopbench_env(request)),
        "ports": _ports(AGENT_PORTS),
        "startupProbe": _until_open(CONTROL_PORT),
    }


def render_k8s(request: RenderRequest, workers: int, command: str) -> str:
    docs: list[dict[str, Any]] = [
        _secret(request),
        _network_policy(),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG, "labels": _labels(CONFIG)},
            "data": {"topology.yaml": request.topology_file.read_text()},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": RESULTS, "labels": _labels(RESULTS)},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
    for broker in brokers_to_run(request):
        ports = {broker.port_name: broker.port}
        container = {
            "name": broker.name,
            "image": broker.image,
            "env": _env(broker.env) + _secret_env(_BROKER_SECRETS.get(broker.name, {})),
            "ports": _ports(ports),
            "startupProbe": _until_open(broker.port),
        }
        docs += [_deployment(broker.name, 1, container), _headless(broker.name, ports)]
    for name, svc in request.topology.services.items():
        docs.append(_deployment(name, svc.replicas, _agent(request, ["agent"]), agent=True))
        docs.append(_headless(name, AGENT_PORTS))

    worker_args = ["agent", "--exit-idle", str(WORKER_IDLE_EXIT_S)]
    docs.append(_headless(LOADGEN, {"control": CONTROL_PORT}))
    docs.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": LOADGEN, "labels": _labels(LOADGEN)},
            "spec": {
                "completionMode": "Indexed",  # pod hostnames loadgen-0, loadgen-1, ...
                "completions": workers,
                "parallelism": workers,
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {**_labels(LOADGEN), **AGENT_LABEL}},
                    "spec": {
                        "subdomain": LOADGEN,  # loadgen-<index>.loadgen resolves to the pod
                        "restartPolicy": "Never",
                        "containers": [_agent(request, worker_args)],
                    },
                },
            },
        }
    )
    args = request.orchestrator_args("{service}:7070", "{service}-{replica}.{service}:7070")
    args += ["--workers", str(workers), *request.run_args]
    docs.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": ORCHESTRATOR, "labels": _labels(ORCHESTRATOR)},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": _labels(ORCHESTRATOR)},
                    "spec": {
                        "restartPolicy": "Never",
                        "securityContext": POD_SECURITY,
                        "initContainers": _broker_wait(request),
                        "containers": [
                            {
                                "name": "hopbench",
                                "image": request.image,
                                "args": args,
                                "env": _secret_env(_hopbench_env(request)),
                                "volumeMounts": [
                                    {
                                        "name": "topology",
                                        "mountPath": TOPOLOGY_PATH.rsplit("/", 1)[0],
                                    },
                                    {"name": "results", "mountPath": RESULTS_PATH},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "topology", "configMap": {"name": CONFIG}},
                            {"name": "results", "persistentVolumeClaim": {"claimName": RESULTS}},
                        ],
                    },
                },
            },
        }
    )
    docs.append(_reader(request))
    if not docs[-2]["spec"]["template"]["spec"]["initContainers"]:
        del docs[-2]["spec"]["template"]["spec"]["initContainers"]
    words = shlex.split(command)
    name = shlex.quote(words[words.index("--out") + 1]) if "--out" in words else "FILE"
    header = (
        f"# Rendered by `{command}`.\n"
        f"# The image ({request.image}) must be in a registry every node pulls from:\n"
        "#   build it, push it and render with --image REGISTRY/hopbench:TAG.\n"
        f"# kubectl apply -f {name} -l '{COMPONENT}!={READER}'\n"
        f"# kubectl wait --for=condition=complete --timeout={RUN_TIMEOUT} job/{ORCHESTRATOR}\n"
        "# Fetch the results from the claim, then remove the reader:\n"
        f"# kubectl apply -f {name} -l {COMPONENT}={READER}\n"
        f"# kubectl wait --for=condition=ready --timeout=5m pod/{READER}\n"
        f"# kubectl cp {READER}:{RESULTS_PATH} ./results && kubectl delete pod {READER}\n"
        f"# Orchestrator: {shlex.join(args)}\n"
    )
    return dump(docs, header)


def _broker_wait(request: RenderRequest) -> list[dict[str, Any]]:
    """The run starts once the in-cluster brokers answer (none: no init container)."""
    addresses = [f"{b.name}:{b.port}" for b in brokers_to_run(request)]
    if not addresses:
        return []
    return [
        {
            "name": "wait-for-brokers",
            "image": request.image,
            "command": ["python", "-c", WAIT_FOR_PORTS, str(BROKER_WAIT_S), *addresses],
        }
    ]


def _reader(request: RenderRequest) -> dict[str, Any]:
    """A pod that mounts the results claim, for `kubectl cp` (the Job's pod has ended)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": READER, "labels": {**_labels(READER), COMPONENT: READER}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": POD_SECURITY,
            "activeDeadlineSeconds": 3600,
            "containers": [
                {
                    "name": "reader",
                    "image": request.image,
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "results", "mountPath": RESULTS_PATH}],
                }
            ],
            "volumes": [{"name": "results", "persistentVolumeClaim": {"claimName": RESULTS}}],
        },
    }
