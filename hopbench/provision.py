"""What a run needs before its services start: ports, topics and queues, by name."""

from __future__ import annotations

from hopbench.broker.procs import free_port
from hopbench.runspec import RunSpec
from hopbench.services.transports.base import queue_name, topic_name
from hopbench.topology import Topology


def allocate_endpoints(topology: Topology) -> dict[str, dict[str, list[str]]]:
    endpoints: dict[str, dict[str, list[str]]] = {}
    for edge in topology.edges:
        if edge.mode in {"http", "grpc"}:
            by_service = endpoints.setdefault(edge.mode, {})
            if edge.target not in by_service:
                replicas = topology.services[edge.target].replicas
                by_service[edge.target] = [f"127.0.0.1:{free_port()}" for _ in range(replicas)]
    return endpoints


def topics(spec: RunSpec) -> dict[str, int]:
    """Topic -> partitions: enough for the largest subscriber group to share it."""
    topology = spec.resolved
    partitions: dict[str, int] = {}
    for edge in topology.edges:
        if edge.mode == "kafka":
            name = topic_name(spec, edge)
            partitions[name] = max(partitions.get(name, 1), topology.services[edge.target].replicas)
    return partitions


def queues(spec: RunSpec) -> list[str]:
    return [queue_name(spec, e) for e in spec.resolved.edges if e.mode == "rabbitmq"]
