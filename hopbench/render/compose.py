"""`hopbench render compose TOPOLOGY`: one container per service replica, each a
`hopbench agent`, Apache Kafka (KRaft) and RabbitMQ with health checks, and the
orchestrator, which runs the load workers itself and writes ./results.

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
    AGENT_HEALTH,
    RESULTS_PATH,
    TOPOLOGY_PATH,
    RenderRequest,
    brokers_to_run,
    dump,
)

REPO = Path(__file__).resolve().parents[2]  # where the Dockerfile is, in a source checkout


def _health(test: list[str], interval_s: int, retries: int) -> dict[str, Any]:
    return {
        "test": ["CMD", *test],
        "interval": f"{interval_s}s",
        "timeout": "10s",
        "retries": retries,
        "start_period": "10s",
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
            "healthcheck": _health(broker.health, 5, 30),
        }
    agents = []
    for name, svc in request.topology.services.items():
        for replica in range(svc.replicas):
            agents.append(f"{name}-{replica}")
            services[agents[-1]] = {
                **hopbench,
                "command": ["agent"],
                "healthcheck": _health(AGENT_HEALTH, 2, 30),
            }
    fixed = shlex.join(request.orchestrator_args("{service}-{replica}:7070"))
    defaults = shlex.join(request.run_args).replace("$", "$$")
    services["hopbench"] = {
        **hopbench,
        "command": f"{fixed} ${{HOPBENCH_ARGS:-{defaults}}}".strip(),
        "volumes": [
            f"{_relative(request.topology_file, base)}:{TOPOLOGY_PATH}:ro",
            f"./results:{RESULTS_PATH}",
        ],
        "depends_on": {name: {"condition": "service_healthy"} for name in [*brokers, *agents]},
    }
    header = (
        f"# Rendered by `{command}`; a test fails when it differs.\n"
        "# Run: docker compose up --build --exit-code-from hopbench   (results in ./results)\n"
        '# Other arguments: HOPBENCH_ARGS="--mode kafka --rate 500" docker compose up ...\n'
    )
    return dump([{"services": services}], header)
