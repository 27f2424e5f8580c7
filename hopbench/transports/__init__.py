"""Transports, found by mode name. Modules are imported only when used.

A mode is its module plus a line here: its ``Transport`` class, and, for a mode
whose broker must hold something before the run starts, its ``plan`` function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from hopbench.config.runspec import RunSpec
from hopbench.config.topology import Edge
from hopbench.transports.base import Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.plan import Provisioning

_REGISTRY: dict[str, str] = {
    "http": "hopbench.transports.http:HttpTransport",
    "grpc": "hopbench.transports.grpc:GrpcTransport",
    "kafka": "hopbench.transports.kafka:KafkaTransport",
    "rabbitmq": "hopbench.transports.rabbitmq:RabbitMqTransport",
    "inmemory": "hopbench.transports.inmemory:InMemoryTransport",
}
# the modes whose broker needs topics, queues... named before the run: mode -> plan(spec)
_PLANS: dict[str, str] = {
    "kafka": "hopbench.transports.kafka:plan",
    "rabbitmq": "hopbench.transports.rabbitmq:plan",
}


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def transport_class(name: str) -> type[Transport]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no transport named {name!r}; known: {', '.join(_REGISTRY)}") from None
    cls: type[Transport] = _load(target)
    return cls


def make_transports(
    context: TransportContext, edges: Iterable[Edge], override: str | None = None
) -> dict[str, Transport]:
    """One transport per mode the edges use (all of one kind when override is given)."""
    transports: dict[str, Transport] = {}
    shared: Transport | None = None
    for edge in edges:
        if edge.mode in transports:
            continue
        if override is not None:
            shared = shared or transport_class(override)(context)
            transports[edge.mode] = shared
        else:
            transports[edge.mode] = transport_class(edge.mode)(context)
    return transports


def provisioning(spec: RunSpec) -> Provisioning:
    """Every topic, queue and exchange the run's modes need, each mode naming its own."""
    plan = Provisioning()
    for mode in sorted(spec.resolved.modes):
        target = _PLANS.get(mode)
        if target is not None:
            part: Callable[[RunSpec], Provisioning] = _load(target)
            plan |= part(spec)
    return plan
