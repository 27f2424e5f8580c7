"""What compose and Kubernetes share: the image, the brokers, the ports, and the
orchestrator's command line."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hopbench.config.deployment import CONTROL_PORT, GRPC_PORT, HTTP_PORT
from hopbench.config.secrets import REDACTED, password_of, redact
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError

IMAGE = "hopbench:local"
KAFKA_IMAGE = "apache/kafka:3.9.0"
RABBITMQ_IMAGE = "rabbitmq:3.13"
REDIS_IMAGE = "redis:7"  # a shared cache's (work.cache store redis)
POSTGRES_IMAGE = "postgres:16"  # for services whose work runs queries (work.db)
POSTGRES_USER = "postgres"
POSTGRES_PORT = 5432
RABBITMQ_USER = "hopbench"  # guest may only connect from localhost; its password is generated
KAFKA_PORT = 9092
RABBITMQ_PORT = 5672
REDIS_PORT = 6379
TOPOLOGY_PATH = "/config/topology.yaml"
RESULTS_PATH = "/results"
BROKERS = ("kafka", "rabbitmq", "redis", "postgres")
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

    def rabbitmq(self, password: str) -> str:
        """The RabbitMQ URL with this password (or a placeholder for it) in it."""
        if self.rabbitmq_url is None:
            return f"amqp://{RABBITMQ_USER}:{password}@rabbitmq:{RABBITMQ_PORT}/"
        if password_of(self.rabbitmq_url) is None:
            return self.rabbitmq_url
        return redact(self.rabbitmq_url).replace(f":{REDACTED}@", f":{password}@", 1)

    @property
    def rabbitmq_password(self) -> str:
        """The given URL's password, or a new one for the RabbitMQ run alongside."""
        given = password_of(self.rabbitmq_url) if self.rabbitmq_url else None
        return given if given is not None else secrets.token_hex(16)

    @property
    def needs_postgres(self) -> bool:
        return any(s.db is not None for s in self.topology.services.values())

    def postgres(self, password: str) -> str:
        """The URL of the PostgreSQL run alongside, with this password (or a placeholder)."""
        return f"postgresql://{POSTGRES_USER}:{password}@postgres:{POSTGRES_PORT}/postgres"

    def orchestrator_args(self, agents: str, worker_agents: str | None = None) -> list[str]:
        """Its command line: no secrets (RabbitMQ's URL and the agents' token are in
        the environment of every hopbench container, from a secret)."""
        args = ["run", TOPOLOGY_PATH, "--agents", agents]
        if worker_agents:
            args += ["--worker-agents", worker_agents]
        args += ["--agents-wait", str(AGENTS_WAIT_S), "--brokers-wait", str(BROKERS_WAIT_S)]
        args += ["--kafka-bootstrap", self.kafka]
        if needs_redis(self.topology):
            args += ["--redis-url", f"redis://redis:{REDIS_PORT}/0"]
        return [*args, "--out", RESULTS_PATH]


def new_token() -> str:
    return secrets.token_hex(32)


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
RABBITMQ_ENV = {"RABBITMQ_DEFAULT_USER": RABBITMQ_USER}  # and RABBITMQ_DEFAULT_PASS, a secret
POSTGRES_ENV = {"POSTGRES_USER": POSTGRES_USER}  # and POSTGRES_PASSWORD, a secret


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
    found = [b for b in wanted if not given[b.name]]
    if needs_redis(request.topology):
        found.append(Broker("redis", REDIS_IMAGE, {}, "redis", REDIS_PORT))
    if request.needs_postgres:
        found.append(Broker("postgres", POSTGRES_IMAGE, POSTGRES_ENV, "postgres", POSTGRES_PORT))
    return found


def needs_redis(topology: Topology) -> bool:
    """Whether a service's work has a cache in Redis: then a Redis runs alongside."""
    return any(s.cache is not None and s.cache.store == "redis" for s in topology.services.values())


# The orchestrator waits this long for agents that do not answer yet (containers or
# pods still starting): that wait replaces the agents' health checks.
AGENTS_WAIT_S = 300
# ... and this long for a broker still starting (it and every process it starts): that
# wait replaces the brokers' health checks in compose, so no probe runs during a run
BROKERS_WAIT_S = 300


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
