"""The ports of a run's HTTP and gRPC servers, chosen before its services start.

(Topics, queues and exchanges are each broker mode's own: hopbench.transports.provisioning.)
"""

from __future__ import annotations

from collections.abc import Mapping

from hopbench.brokers.procs import free_port
from hopbench.config.topology import Topology

Agent = tuple[str, Mapping[str, int]]  # an agent's host and its data port per mode


def allocate_endpoints(
    topology: Topology, agents: Mapping[str, list[Agent]] | None = None
) -> dict[str, dict[str, list[str]]]:
    """host:port of every HTTP and gRPC server: a free loopback port for a local
    child, the agent's host and its port for that mode for an agent."""
    endpoints: dict[str, dict[str, list[str]]] = {}
    for edge in topology.edges:
        if edge.mode in {"http", "grpc"}:
            by_service = endpoints.setdefault(edge.mode, {})
            if edge.target in by_service:
                continue
            placed = (agents or {}).get(edge.target)
            if placed:
                by_service[edge.target] = [f"{host}:{ports[edge.mode]}" for host, ports in placed]
            else:
                replicas = topology.services[edge.target].replicas
                by_service[edge.target] = [f"127.0.0.1:{free_port()}" for _ in range(replicas)]
    return endpoints
