"""Where a run's processes live: children of the orchestrator (the default) or
agents (``hopbench agent``) reached by address, in containers or on other hosts.

Agents are named by an address template, one agent per replica,
``{service}-{replica}:7070`` (compose: a container per replica), or one name per
service, ``{service}:7070``, that DNS resolves to every replica (a headless
Kubernetes Service; the addresses are taken in sorted order, one per replica);
or by an explicit list, ``gateway/0=10.0.0.5:7070,worker/0=10.0.0.6:7070``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hopbench.config.cache import DEFAULT_REDIS_URL
from hopbench.config.secrets import read_token
from hopbench.errors import ConfigError, RunError


@dataclass(frozen=True)
class Placement:
    services: str | None = None  # address template for service replicas; None: local
    workers: str | None = None  # the same for load workers ("{service}" is "loadgen")
    wait_s: float = 0.0  # how long to keep trying agents that are not up yet
    token: str | None = field(default=None, repr=False)  # answers the agents' challenge

    def __post_init__(self) -> None:
        for flag, template in (("--agents", self.services), ("--worker-agents", self.workers)):
            if template is None:
                continue
            if "=" in template:
                _explicit(flag, template)
                continue
            if "{service}" not in template or ":" not in template:
                raise ConfigError(
                    f"{flag} {template!r}: expected an address template such as "
                    "'{service}-{replica}:7070' or '{service}:7070'"
                )
            try:
                template.format(service="x", replica=0)
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{flag} {template!r}: {exc}; only {{service}} and {{replica}} may appear"
                ) from None


DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKERS_WAIT_S = 30.0  # how long a run waits for a broker that is still starting
CONTROL_PORT = 7070  # an agent's defaults: `hopbench agent` and the rendered files
HTTP_PORT = 8000
GRPC_PORT = 9000


@dataclass(frozen=True)
class Deployment:
    """Where the brokers and the processes of every run are."""

    rabbitmq_url: str = DEFAULT_RABBITMQ_URL
    kafka_bootstrap: str | None = None  # None: start the embedded broker (Tansu) per run
    placement: Placement = field(default_factory=Placement)
    brokers_wait_s: float = BROKERS_WAIT_S
    redis_url: str = DEFAULT_REDIS_URL  # a shared cache's (work.cache store redis)
    postgres_url: str = DEFAULT_POSTGRES_URL  # for services whose work runs queries

    def __post_init__(self) -> None:
        _check_tls_files(self.rabbitmq_url)
        if not 0 <= self.brokers_wait_s <= 3600:
            raise ConfigError(
                f"--brokers-wait {self.brokers_wait_s:g}: expected seconds from 0 (one try) "
                "to 3600, e.g. --brokers-wait 30"
            )

    @classmethod
    def from_env(
        cls,
        rabbitmq_url: str | None = None,
        kafka_bootstrap: str | None = None,
        agents: str | None = None,
        worker_agents: str | None = None,
        agents_wait: float = 0.0,
        agent_token_file: Path | None = None,
        brokers_wait: float = BROKERS_WAIT_S,
        redis_url: str | None = None,
        postgres_url: str | None = None,
    ) -> Deployment:
        """Flags first, then HOPBENCH_RABBITMQ_URL / HOPBENCH_KAFKA_BOOTSTRAP /
        HOPBENCH_AGENT_TOKEN / HOPBENCH_REDIS_URL /
        HOPBENCH_POSTGRES_URL, then local."""
        return cls(
            rabbitmq_url=rabbitmq_url
            or os.environ.get("HOPBENCH_RABBITMQ_URL")
            or DEFAULT_RABBITMQ_URL,
            kafka_bootstrap=kafka_bootstrap or os.environ.get("HOPBENCH_KAFKA_BOOTSTRAP") or None,
            placement=Placement(
                agents,
                worker_agents,
                agents_wait,
                read_token(agent_token_file, "--agent-token-file"),
            ),
            brokers_wait_s=brokers_wait,
            redis_url=redis_url or os.environ.get("HOPBENCH_REDIS_URL") or DEFAULT_REDIS_URL,
            postgres_url=postgres_url
            or os.environ.get("HOPBENCH_POSTGRES_URL")
            or DEFAULT_POSTGRES_URL,
        )


def _check_tls_files(url: str) -> None:
    """An amqps:// URL's certificate files (aiormq's cafile, certfile, keyfile) exist
    here: the orchestrator connects with them too."""
    parts = urlsplit(url)
    if parts.scheme != "amqps":
        return
    for name, values in parse_qs(parts.query).items():
        if name in {"cafile", "certfile", "keyfile"} and not Path(values[-1]).is_file():
            raise ConfigError(
                f"--rabbitmq-url: {name}={values[-1]}: no such file; give the path of "
                + ("the CA that signed the broker's certificate" if name == "cafile" else
                   f"this client's {name[:-4]} for the broker")
            )  # fmt: skip


def _explicit(flag: str, text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, address = item.partition("=")
        if "/" not in name or ":" not in address:
            raise ConfigError(
                f"{flag} {item!r}: expected SERVICE/REPLICA=HOST:PORT, e.g. worker/0=10.0.0.6:7070"
            )
        found[name.strip()] = address.strip()
    return found


def addresses(template: str, service: str, replicas: int) -> list[str]:
    """host:port of each replica's agent."""
    if "=" in template:
        given = _explicit("--agents", template)
        missing = [f"{service}/{r}" for r in range(replicas) if f"{service}/{r}" not in given]
        if missing:
            raise ConfigError(f"--agents: no address for {', '.join(missing)}")
        return [given[f"{service}/{r}"] for r in range(replicas)]
    if "{replica}" in template:
        return [template.format(service=service, replica=r) for r in range(replicas)]
    host, _, port = template.format(service=service).rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RunError(f"{service}: cannot resolve {host} ({exc})") from None
    found = sorted({str(info[4][0]) for info in infos})
    if len(found) != replicas:
        raise RunError(
            f"{service}: {host} resolves to {len(found)} address(es) {found}, but the "
            f"topology has {replicas} replica(s); scale the service to match"
        )
    return [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in found]


def host_of(address: str) -> str:
    return address.rpartition(":")[0]


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: assume it resolves where it is used


def check_reachable(agent_addresses: list[str], brokers: dict[str, str]) -> None:
    """Agents on other hosts cannot reach a broker that only listens on loopback."""
    away = [a for a in agent_addresses if not is_loopback(host_of(a))]
    if not away:
        return
    for flag, address in brokers.items():
        host = urlsplit(address).hostname if "://" in address else host_of(address)
        if host and is_loopback(host):
            raise ConfigError(
                f"agents such as {away[0]} cannot reach a broker at {address} (loopback); "
                f"pass {flag} with an address they can reach"
            )
