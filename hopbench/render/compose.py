"""`hopbench render compose TOPOLOGY`: one container per service replica, each a
`hopbench agent`, Apache Kafka (KRaft) and RabbitMQ with health checks, and the
orchestrator, which runs the load workers itself and writes ./results.

Health checks cost next to nothing and run on every engine: only the brokers have
one (a shell's connect to the port, no space in any argument); the orchestrator waits
for the agents itself (--agents-wait), so no probe runs in them during a measurement.
Every container stops on SIGINT (the image's STOPSIGNAL), within a second.

    docker compose up --build --exit-code-from hopbench

Its arguments can be changed without rendering again:
``HOPBENCH_ARGS="--mode kafka --rate 500" docker compose up ...``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from hopbench.render.common import (
    RESULTS_PATH,
    TOPOLOGY_PATH,
    RenderRequest,
    brokers_to_run,
    dump,
    port_open,
)

REPO = Path(__file__).resolve().parents[2]  # where the Dockerfile is, in a source checkout


def _health(test: list[str]) -> dict[str, Any]:
    # No start_interval: docker-compose 1.29 rejects it and engines before 25 ignore it.
    return {
        "test": ["CMD", *test],
        "interval": "5s",
        "timeout": "5s",
        "retries": 30,
        "start_period": "30s",
    }


def _relative(path: Path, base: Path) -> str:
    rel = os.path.relpath(path.resolve(), base.resolve())
    return rel if rel.startswith(".") else f"./{rel}"


def render_compose(request: RenderRequest, out: Path, command: str) -> str:
    base = out.parent
    hopbench: dict[str, Any] = {"image": request.image}
    if (REPO / "Dockerfile").exists():
        hopbench["build"] = _relative(REPO, base)
    services: dict[str, Any] = {}
    brokers = [b.name for b in brokers_to_run(request)]
    for broker in brokers_to_run(request):
        services[broker.name] = {
            "image": broker.image,
            "environment": dict(broker.env),
            "healthcheck": _health(port_open(broker.port)),
        }
    agents = []
    for name, svc in request.topology.services.items():
        for replica in range(svc.replicas):
            agents.append(f"{name}-{replica}")
            services[agents[-1]] = {**hopbench, "command": ["agent"]}
    fixed = shlex.join(request.orchestrator_args("{service}-{replica}:7070"))
    defaults = shlex.join(request.run_args).replace("$", "$$")
    services["hopbench"] = {
        **hopbench,
        "command": f"{fixed} ${{HOPBENCH_ARGS:-{defaults}}}".strip(),
        "volumes": [
            f"{_relative(request.topology_file, base)}:{TOPOLOGY_PATH}:ro",
            f"./results:{RESULTS_PATH}",
        ],
        "depends_on": {
            **{name: {"condition": "service_healthy"} for name in brokers},
            **{name: {"condition": "service_started"} for name in agents},
        },
    }
    header = (
        f"# Rendered by `{command}`; a test fails when it differs.\n"
        "# Run: mkdir -p results && docker compose up --build --exit-code-from hopbench\n"
        "# (results in ./results, written as uid 1000: the image's user)\n"
        '# Other arguments: HOPBENCH_ARGS="--mode kafka --rate 500" docker compose up ...\n'
    )
    return dump([{"services": services}], header)
