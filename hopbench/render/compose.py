"""`hopbench render compose TOPOLOGY`: one container per service replica, each a
`hopbench agent`, Apache Kafka (KRaft) and RabbitMQ, and the orchestrator, which runs
the load workers itself and writes ./results.

No container has a health check. A probe is a process the engine starts in the
container every interval, on the machine being measured, for as long as it runs (a
broker's own tool starts a JVM or an Erlang VM: ~0.5 CPU-s each). The orchestrator
waits instead, before anything is measured: for the brokers (--brokers-wait, it and
every process it starts) and for the agents (--agents-wait). So nothing depends on
anything (no ``depends_on``): ``docker compose stop`` stops every container at once
and takes as long as the slowest clean stop (RabbitMQ's), not the orchestrator's and
then the brokers'. Stopped, the orchestrator tries each broker's cleanup once
(hopbench.brokers.wait.cleanup_limits), as the broker is stopping too. Every
container stops on SIGINT (the image's STOPSIGNAL).

    docker compose up --build --exit-code-from hopbench

Its arguments can be changed without rendering again:
``HOPBENCH_ARGS="--mode kafka --rate 500" docker compose up ...``.

The file holds no secret: the agents' token and RabbitMQ's password are
``${...}`` references that compose fills from ``.env`` beside the file, which
``hopbench render compose`` writes (mode 0600) with new random values when it is
not there yet (``compose_secrets``). Without ``.env`` (a fresh clone's committed
file) they fall back to fixed values (``COMPOSE_DEFAULTS``), so that ``docker
compose up`` works as it is: the file publishes no port, so the agents and the
brokers are reachable only from the project's network and this host.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from hopbench.config.secrets import (
    PASSWORD_ENV,
    POSTGRES_PASSWORD_ENV,
    POSTGRES_URL_ENV,
    TOKEN_ENV,
    URL_ENV,
)
from hopbench.render.common import (
    RESULTS_PATH,
    TOPOLOGY_PATH,
    RenderRequest,
    brokers_to_run,
    dump,
    new_token,
)

REPO = Path(__file__).resolve().parents[2]  # where the Dockerfile is, in a source checkout
ENV_FILE = ".env"  # compose reads it from the file's folder


# what compose uses where .env (or the environment) does not set a secret
COMPOSE_DEFAULTS = {
    TOKEN_ENV: "compose-network-only-token",
    PASSWORD_ENV: "hopbench",
    POSTGRES_PASSWORD_ENV: "hopbench",
}


def _from_env(name: str) -> str:
    return f"${{{name}:-{COMPOSE_DEFAULTS[name]}}}"


def compose_secrets(request: RenderRequest) -> dict[str, str]:
    """What .env holds: new random values (and a password given in --rabbitmq-url)."""
    found = {TOKEN_ENV: new_token(), PASSWORD_ENV: request.rabbitmq_password}
    if request.needs_postgres:
        found[POSTGRES_PASSWORD_ENV] = new_token()[:32]
    return found


def write_env_file(request: RenderRequest, folder: Path) -> tuple[Path, list[str]]:
    """Add the secrets that .env lacks (never replacing one); it is the user's to see
    and keep out of version control. The names it added."""
    path = folder / ENV_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    have = {line.partition("=")[0].strip() for line in text.splitlines()}
    added = {k: v for k, v in compose_secrets(request).items() if k not in have}
    if added:
        lines = "".join(f"{k}={v}\n" for k, v in added.items())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(("" if not text or text.endswith("\n") else "\n") + lines)
    return path, list(added)


def _relative(path: Path, base: Path) -> str:
    rel = os.path.relpath(path.resolve(), base.resolve())
    return rel if rel.startswith(".") else f"./{rel}"


def render_compose(request: RenderRequest, out: Path, command: str) -> str:
    base = out.parent
    hopbench: dict[str, Any] = {"image": request.image}
    secret_env = {
        TOKEN_ENV: _from_env(TOKEN_ENV),
        URL_ENV: request.rabbitmq(_from_env(PASSWORD_ENV)),
    }
    if request.needs_postgres:
        secret_env[POSTGRES_URL_ENV] = request.postgres(_from_env(POSTGRES_PASSWORD_ENV))
    if (REPO / "Dockerfile").exists():
        hopbench["build"] = _relative(REPO, base)
    services: dict[str, Any] = {}
    brokers = brokers_to_run(request)
    for broker in brokers:
        env = dict(broker.env)
        if broker.name == "rabbitmq":
            env["RABBITMQ_DEFAULT_PASS"] = _from_env(PASSWORD_ENV)
        if broker.name == "postgres":
            env["POSTGRES_PASSWORD"] = _from_env(POSTGRES_PASSWORD_ENV)
        services[broker.name] = {
            "image": broker.image,
            "environment": env,
        }
    for name, svc in request.topology.services.items():
        for replica in range(svc.replicas):
            services[f"{name}-{replica}"] = {
                **hopbench,
                "command": ["agent"],
                "environment": secret_env,
            }
    fixed = shlex.join(request.orchestrator_args("{service}-{replica}:7070"))
    defaults = shlex.join(request.run_args).replace("$", "$$")
    services["hopbench"] = {
        **hopbench,
        "command": f"{fixed} ${{HOPBENCH_ARGS:-{defaults}}}".strip(),
        "environment": secret_env,
        "volumes": [
            f"{_relative(request.topology_file, base)}:{TOPOLOGY_PATH}:ro",
            f"./results:{RESULTS_PATH}",
        ],
    }
    header = (
        f"# Rendered by `{command}`; a test fails when it differs.\n"
        "# Run: mkdir -p results && docker compose up --build --exit-code-from hopbench\n"
        "# (results in ./results, written as uid 1000: the image's user)\n"
        f"# Secrets: {ENV_FILE} beside this file (the command above writes new ones); without\n"
        "# it, fixed defaults: no port is published, so only this host reaches the containers\n"
        '# Other arguments: HOPBENCH_ARGS="--mode kafka --rate 500" docker compose up ...\n'
    )
    return dump([{"services": services}], header)
