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
from hopbench.transports.split import SplitByLibrary

_REGISTRY: dict[str, str] = {
    "http": "hopbench.transports.http:HttpTransport",
    "grpc": "hopbench.transports.grpc:GrpcTransport",
    "kafka": "hopbench.transports.kafka:KafkaTransport",
    "rabbitmq": "hopbench.transports.rabbitmq:RabbitMqTransport",
    "inmemory": "hopbench.transports.inmemory:InMemoryTransport",
}
# a mode whose client library is an edge setting: mode -> (the setting, library -> class);
# an edge on a library not named here uses the mode's own class above
_LIBRARIES: dict[str, tuple[str, dict[str, str]]] = {
    "rabbitmq": (
        "rabbitmq_client",
        {"pika": "hopbench.transports.rabbitmq_pika:PikaRabbitMqTransport"},
    ),
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


def library_of(context: TransportContext, edge: Edge) -> str:
    """The client library an edge's ends use, for a mode that has a choice ('' if none)."""
    setting, _ = _LIBRARIES.get(edge.mode, ("", {}))
    return str(getattr(context.settings_for(edge), setting)) if setting else ""


def _for_library(context: TransportContext, mode: str, library: str) -> Transport:
    target = _LIBRARIES.get(mode, ("", {}))[1].get(library)
    return _load(target)(context) if target else transport_class(mode)(context)


def make_transports(
    context: TransportContext, edges: Iterable[Edge], override: str | None = None
) -> dict[str, Transport]:
    """One transport per mode the edges use (all of one kind when override is given),
    built for the client library the edges choose: the one factory for services and
    load workers alike. A mode whose edges here use two libraries gets one transport
    per library behind a SplitByLibrary."""
    if override is not None:
        shared = transport_class(override)(context)
        return {edge.mode: shared for edge in edges}
    libraries: dict[str, set[str]] = {}
    for edge in edges:
        libraries.setdefault(edge.mode, set()).add(library_of(context, edge))
    transports: dict[str, Transport] = {}
    for mode, names in libraries.items():
        if len(names) == 1:
            transports[mode] = _for_library(context, mode, names.pop())
        else:
            parts = {name: _for_library(context, mode, name) for name in sorted(names)}
            transports[mode] = SplitByLibrary(
                context, parts, lambda edge: library_of(context, edge)
            )
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
