"""What compose and Kubernetes share: the image, the brokers, the ports, and the
orchestrator's command line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hopbench.config.deployment import CONTROL_PORT, GRPC_PORT, HTTP_PORT
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError

IMAGE = "hopbench:local"
KAFKA_IMAGE = "apache/kafka:3.9.0"
RABBITMQ_IMAGE = "rabbitmq:3.13"
RABBITMQ_USER = RABBITMQ_PASSWORD = "hopbench"  # guest may only connect from localhost
KAFKA_PORT = 9092
RABBITMQ_PORT = 5672
TOPOLOGY_PATH = "/config/topology.yaml"
RESULTS_PATH = "/results"
BROKERS = ("kafka", "rabbitmq")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$")


@dataclass
class RenderRequest:
    """A topology, the command-line choices that shape its runs, and where it goes."""

    topology: Topology
    topology_file: Path
    run_args: list[str] = field(default_factory=list)  # --mode, --set, --rate ... as given
    image: str = IMAGE
    kafka_bootstrap: str | None = None  # a Kafka elsewhere; None: run one alongside
    rabbitmq_url: str | None = None  # the same for RabbitMQ

    def __post_init__(self) -> None:
        for name in self.topology.services:
            if not _NAME.match(name) or name in BROKERS or name.startswith("hopbench"):
                raise ConfigError(
                    f"{self.topology_file}: service '{name}' cannot be a container or DNS name; "
                    "use lowercase letters, digits and '-', starting with a letter; "
                    f"{', '.join(BROKERS)} and hopbench* are taken"
                )

    @property
    def kafka(self) -> str:
        return self.kafka_bootstrap or f"kafka:{KAFKA_PORT}"

    @property
    def rabbitmq(self) -> str:
        login = f"{RABBITMQ_USER}:{RABBITMQ_PASSWORD}"
        return self.rabbitmq_url or f"amqp://{login}@rabbitmq:{RABBITMQ_PORT}/"

    def orchestrator_args(self, agents: str, worker_agents: str | None = None) -> list[str]:
        args = ["run", TOPOLOGY_PATH, "--agents", agents]
        if worker_agents:
            args += ["--worker-agents", worker_agents]
        args += ["--agents-wait", str(AGENTS_WAIT_S)]
        args += ["--kafka-bootstrap", self.kafka, "--rabbitmq-url", self.rabbitmq]
        return [*args, "--out", RESULTS_PATH]


AGENT_PORTS = {"control": CONTROL_PORT, "http": HTTP_PORT, "grpc": GRPC_PORT}

KAFKA_ENV = {
    # one node, broker and KRaft controller in one process; the official image
    # takes every server property as KAFKA_<NAME> (and uses no defaults once any is set)
    "KAFKA_NODE_ID": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:9093",
    "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://kafka:{KAFKA_PORT}",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",  # hopbench creates each run's topics
}
RABBITMQ_ENV = {"RABBITMQ_DEFAULT_USER": RABBITMQ_USER, "RABBITMQ_DEFAULT_PASS": RABBITMQ_PASSWORD}


def port_open(port: int) -> list[str]:
    """A health check that costs a shell's fork and one connect, and has no space in any
    argument (podman's Docker API splits arguments on spaces, podman#26519). It replaces
    the brokers' own tools, which start a JVM or an Erlang VM (~0.5 CPU-s) per probe."""
    return ["bash", "-c", f"</dev/tcp/127.0.0.1/{port}"]


@dataclass(frozen=True)
class Broker:
    name: str  # its container, Service and DNS name
    image: str
    env: dict[str, str]
    port_name: str
    port: int


def brokers_to_run(request: RenderRequest) -> list[Broker]:
    """The brokers to run alongside: those not given by address."""
    wanted = [
        Broker("kafka", KAFKA_IMAGE, KAFKA_ENV, "kafka", KAFKA_PORT),
        Broker("rabbitmq", RABBITMQ_IMAGE, RABBITMQ_ENV, "amqp", RABBITMQ_PORT),
    ]
    given = {"kafka": request.kafka_bootstrap, "rabbitmq": request.rabbitmq_url}
    return [b for b in wanted if not given[b.name]]


# The orchestrator waits this long for agents that do not answer yet (containers or
# pods still starting): that wait replaces the agents' health checks.
AGENTS_WAIT_S = 300


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, no anchors, long strings unwrapped."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(documents: list[dict[str, Any]], header: str) -> str:
    body = "---\n".join(
        yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
        for d in documents
    )
    return header + body
