"""What a run needs before its services start: ports, topics and queues, by name."""

from __future__ import annotations

from collections.abc import Mapping

from hopbench.brokers.procs import free_port
from hopbench.config.runspec import RunSpec
from hopbench.config.topology import LOADGEN, Topology
from hopbench.transports.base import exchange_name, queue_name, reply_topic, topic_name

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


def topics(spec: RunSpec) -> dict[str, int]:
    """Topic -> partitions: an edge's kafka_partitions, else enough for the largest
    subscriber group to share it; plus a one-partition reply topic for every
    process that calls over Kafka."""
    topology = spec.resolved
    partitions: dict[str, int] = {}
    for edge in topology.edges:
        if edge.mode != "kafka":
            continue
        name = topic_name(spec.run_id, edge)
        wanted = spec.for_edge(edge).kafka_partitions or topology.services[edge.target].replicas
        partitions[name] = max(partitions.get(name, 1), wanted)
        if edge.is_sync:
            for replica in range(_replicas(spec, edge.source)):
                partitions[reply_topic(spec.run_id, edge.source, replica)] = 1
    return partitions


def _replicas(spec: RunSpec, service: str) -> int:
    if service == LOADGEN:
        return spec.load.workers
    return spec.resolved.services[service].replicas


def queues(spec: RunSpec) -> dict[str, bool]:
    """Queue -> durable, per the edge's own setting."""
    return {
        queue_name(spec.run_id, e): spec.for_edge(e).rabbitmq_durable
        for e in spec.resolved.edges
        if e.mode == "rabbitmq"
    }


def exchanges(spec: RunSpec) -> dict[str, list[str]]:
    """Fanout exchange -> the subscriber queues bound to it."""
    bound: dict[str, list[str]] = {}
    for edge in spec.resolved.edges:
        if edge.mode == "rabbitmq" and edge.pattern == "publish-subscribe":
            bound.setdefault(exchange_name(spec.run_id, edge), []).append(
                queue_name(spec.run_id, edge)
            )
    return bound
