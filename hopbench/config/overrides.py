"""Command-line changes to a topology: ``--mode MODE`` and ``--set PATH=VALUE``.

Paths are dotted: ``services.worker.replicas=2``, ``services.worker.work.cpu_us=200``,
``edges[1].mode=kafka`` (or ``edges.1.mode``), and edges by name:
``edges.gateway->worker.mode=kafka``. Values are parsed as YAML scalars. In a shell,
quote a path that names an edge, or the ``>`` of ``->`` redirects:
``--set 'edges.gateway->worker.mode=kafka'``.

Changing an edge's mode never silently changes what is measured: the edge keeps the
pattern it had (as written, or its old mode's natural one: a pattern-less HTTP edge
stays request-reply over Kafka or RabbitMQ). Only where the new mode cannot carry it
does the pattern change: publish-subscribe moved to HTTP or gRPC becomes
fire-and-forget, one send per subscriber edge, and a note says so (``validate``
prints it, the run's results keep it). ``--pattern`` sets every edge's pattern. The
results record the pattern that ran.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

import yaml
from pydantic import BaseModel

from hopbench.config.settings import EDGE_SETTINGS
from hopbench.config.topology import (
    FALLBACK_PATTERN,
    NATURAL_PATTERN,
    UNSUPPORTED,
    EdgeSpec,
    GatherSpec,
    ServiceSpec,
    TopologySpec,
    WorkSpec,
)
from hopbench.config.yamlsource import Located, PathKey, format_path
from hopbench.errors import ConfigError

_INDEXED = re.compile(r"^([^\[\]]+)\[(\d+)\]$")


def apply_mode(located: Located, mode: str) -> None:
    for i, edge in enumerate(_edges(located, f"--mode {mode}")):
        if isinstance(edge, dict):
            pattern = _pattern_of(edge)
            edge["mode"] = mode
            _keep_pattern(located, edge, pattern, f"--mode {mode}")
            located.overridden[("edges", i, "mode")] = f"--mode {mode}"


def apply_pattern(located: Located, pattern: str) -> None:
    """``--pattern``: every edge's pattern (a mode that cannot carry it fails validation)."""
    for i, edge in enumerate(_edges(located, f"--pattern {pattern}")):
        if isinstance(edge, dict):
            edge["pattern"] = pattern
            located.overridden[("edges", i, "pattern")] = f"--pattern {pattern}"


def _pattern_of(edge: dict[str, Any]) -> Any:
    """The pattern the edge runs with now: as written, else its mode's natural one."""
    pattern = edge.get("pattern")
    return pattern if pattern is not None else NATURAL_PATTERN.get(str(edge.get("mode")))


def _keep_pattern(located: Located, edge: dict[str, Any], pattern: Any, flag: str) -> None:
    """After a mode change: the edge's old pattern, or the fallback where its new mode
    cannot carry it (said in a note)."""
    if pattern is None:
        return  # the old mode was not a mode: validation names it
    mode = edge.get("mode")
    if (mode, pattern) in UNSUPPORTED:
        fallback = FALLBACK_PATTERN[pattern]
        located.notes.append(
            f"{flag}: {edge.get('from')}->{edge.get('to')} was {pattern}, which {mode} cannot "
            f"carry; it runs as {fallback} (one send per subscriber edge), which measures "
            "each delivery on its own"
        )
        pattern = fallback
    edge["pattern"] = pattern


def apply_sets(located: Located, assignments: list[str]) -> None:
    explicit_patterns: set[int] = set()
    before: dict[int, tuple[Any, str]] = {}  # edge -> (its pattern before, the flag)
    for assignment in assignments:
        flag = f"--set {assignment}"
        path_text, sep, value_text = assignment.partition("=")
        if not sep or not path_text.strip():
            raise ConfigError(f"{flag}: expected PATH=VALUE, e.g. services.worker.replicas=2")
        path = _parse_path(located, path_text.strip(), flag)
        check_path(located, path, flag)
        if path[:1] == ("edges",) and path[2:] == ("mode",) and isinstance(path[1], int):
            edge = _child(located.data.get("edges"), path[1])
            if isinstance(edge, dict) and path[1] not in before:
                before[path[1]] = (_pattern_of(edge), flag)
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{flag}: the value is not a YAML scalar: {value_text!r}") from exc
        _assign(located.data, path, value, flag)
        located.overridden[path] = flag
        if len(path) == 3 and path[0] == "edges" and path[2] == "pattern":
            explicit_patterns.add(int(path[1]))
    edges = _edges(located, "--set")
    for index, (pattern, flag) in before.items():
        if index not in explicit_patterns and isinstance(edges[index], dict):
            _keep_pattern(located, edges[index], pattern, flag)


def _edges(located: Located, flag: str) -> list[Any]:
    edges = located.data.get("edges") if isinstance(located.data, dict) else None
    if not isinstance(edges, list):
        raise ConfigError(f"{located.source}: {flag}: the topology has no list of edges")
    return edges


def _parse_path(located: Located, text: str, flag: str) -> PathKey:
    parts: list[str | int] = []
    tokens = text.split(".")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        match = _INDEXED.match(token)
        if match:
            parts.extend([match.group(1), int(match.group(2))])
        elif token.isdigit() and parts:
            parts.append(int(token))
        elif "->" in token and parts == ["edges"]:
            parts.append(_edge_index(located, token, flag))
        else:
            parts.append(token)
        i += 1
    if not parts or parts[0] not in {"name", "description", "services", "edges"}:
        raise ConfigError(f"{flag}: a path starts with services, edges, name or description")
    return tuple(parts)


def check_path(located: Located, path: PathKey, flag: str) -> None:
    """A path names what the file has, or a field the format documents (a service's
    ``concurrency``, an edge's ``settings.kafka_acks``): never a new service by a typo."""
    head = path[0]
    if head in ("name", "description"):
        _check_fields(path, 0, flag, TopologySpec, {})
    elif head == "services" and len(path) > 1:
        services = located.data.get("services")
        names = [str(n) for n in services] if isinstance(services, dict) else []
        if path[1] not in names:
            raise ConfigError(
                f"{flag}: {located.source} has no service {path[1]!r}{_near(path[1], names)}; "
                f"its services are {', '.join(names)} (add a service in the file, not by --set)"
            )
        _check_fields(path, 2, flag, ServiceSpec, {"work": WorkSpec, "gather": GatherSpec})
    elif head == "edges" and len(path) > 1:
        if not isinstance(path[1], int):
            raise ConfigError(
                f"{flag}: name an edge by its index or by FROM->TO, e.g. 'edges[1].mode=kafka' "
                "or 'edges.gateway->worker.mode=kafka'"
            )
        edges = _edges(located, flag)
        if path[1] >= len(edges):
            shown = ", ".join(
                f"[{i}] {e.get('from')}->{e.get('to')}"
                for i, e in enumerate(edges)
                if isinstance(e, dict)
            )
            raise ConfigError(f"{flag}: edges[{path[1]}] does not exist; the edges are {shown}")
        _check_fields(path, 2, flag, EdgeSpec, {"settings": EDGE_SETTINGS})


def _check_fields(
    path: PathKey,
    depth: int,
    flag: str,
    fields: type[BaseModel] | frozenset[str],
    nested: dict[str, type[BaseModel] | frozenset[str]],
) -> None:
    """path[depth:] walks known fields: a model's (by their YAML names), or a set of keys."""
    if len(path) <= depth:
        return
    key = path[depth]
    if isinstance(fields, frozenset):
        known = sorted(fields)
    else:
        known = [info.alias or name for name, info in fields.model_fields.items()]
    if key not in known:
        parent = format_path(path[:depth])
        raise ConfigError(
            f"{flag}: {format_path(path[: depth + 1])} is not a field{_near(key, known)}; "
            f"{parent} has {', '.join(known)} (docs/topologies.md)"
        )
    below = nested.get(str(key))
    if below is None and not isinstance(fields, frozenset):
        below = _model_of(fields, str(key))
    if below is not None:
        _check_fields(path, depth + 1, flag, below, {})
    elif len(path) > depth + 1:
        raise ConfigError(f"{flag}: {format_path(path[: depth + 1])} has no fields below it")


def _model_of(fields: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The model a field holds (``work.lock``: LockSpec), when it holds one."""
    info = fields.model_fields.get(key)
    hint = info.annotation if info is not None else None
    for kind in (hint, *typing.get_args(hint)):  # LockSpec, or LockSpec | None
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None


def _near(name: object, names: list[str]) -> str:
    close = difflib.get_close_matches(str(name), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _edge_index(located: Located, name: str, flag: str) -> int:
    source, _, target = name.partition("->")
    edges = _edges(located, flag)
    for i, edge in enumerate(edges):
        if isinstance(edge, dict) and edge.get("from") == source and edge.get("to") == target:
            return i
    names = ", ".join(f"{e.get('from')}->{e.get('to')}" for e in edges if isinstance(e, dict))
    raise ConfigError(f"{flag}: no edge named {name}; the edges are {names}")


def _assign(data: Any, path: PathKey, value: Any, flag: str) -> None:
    node = data
    for depth, key in enumerate(path[:-1]):
        nxt = _child(node, key)
        if nxt is None:
            if isinstance(node, dict) and isinstance(key, str):
                nxt = node[key] = {}
            else:
                raise ConfigError(f"{flag}: {_shown(path[: depth + 1])} does not exist")
        node = nxt
    last = path[-1]
    settable_key = isinstance(node, dict) and isinstance(last, str)
    settable_item = isinstance(node, list) and isinstance(last, int) and last < len(node)
    if settable_key or settable_item:
        node[last] = value
    else:
        raise ConfigError(f"{flag}: {_shown(path)} does not exist")


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, dict) and isinstance(key, str):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int):
        return node[key] if key < len(node) else None
    return None


def _shown(path: PathKey) -> str:
    return format_path(path)
