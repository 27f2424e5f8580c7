"""Command-line changes to a topology: ``--mode MODE`` and ``--set PATH=VALUE``.

Paths are dotted: ``services.worker.replicas=2``, ``services.worker.work.cpu_us=200``,
``edges[1].mode=kafka`` (or ``edges.1.mode``), and edges by name:
``edges.gateway->worker.mode=kafka``. Values are parsed as YAML scalars. In a shell,
quote a path that names an edge, or the ``>`` of ``->`` redirects:
``--set 'edges.gateway->worker.mode=kafka'``.

Changing an edge's mode keeps its pattern where the new mode carries it (an edge
with no pattern takes the new mode's natural one); publish-subscribe moved to HTTP
or gRPC becomes fire-and-forget, one send per subscriber edge. The results record
the pattern that ran.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from hopbench.config.topology import FALLBACK_PATTERN, UNSUPPORTED
from hopbench.config.yamlsource import Located, PathKey, format_path
from hopbench.errors import ConfigError

_INDEXED = re.compile(r"^([^\[\]]+)\[(\d+)\]$")


def apply_mode(located: Located, mode: str) -> None:
    for i, edge in enumerate(_edges(located, f"--mode {mode}")):
        if isinstance(edge, dict):
            edge["mode"] = mode
            _fit_pattern(edge)
            located.overridden[("edges", i, "mode")] = f"--mode {mode}"


def _fit_pattern(edge: dict[str, Any]) -> None:
    """Keep the edge's pattern if its new mode carries it, else its fallback."""
    pattern = edge.get("pattern")
    if pattern is not None and (edge.get("mode"), pattern) in UNSUPPORTED:
        edge["pattern"] = FALLBACK_PATTERN[pattern]


def apply_sets(located: Located, assignments: list[str]) -> None:
    explicit_patterns: set[int] = set()
    mode_changes: list[int] = []
    for assignment in assignments:
        flag = f"--set {assignment}"
        path_text, sep, value_text = assignment.partition("=")
        if not sep or not path_text.strip():
            raise ConfigError(f"{flag}: expected PATH=VALUE, e.g. services.worker.replicas=2")
        path = _parse_path(located, path_text.strip(), flag)
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{flag}: the value is not a YAML scalar: {value_text!r}") from exc
        _assign(located.data, path, value, flag)
        located.overridden[path] = flag
        if len(path) == 3 and path[0] == "edges":
            index = int(path[1])
            if path[2] == "pattern":
                explicit_patterns.add(index)
            elif path[2] == "mode":
                mode_changes.append(index)
    edges = _edges(located, "--set")
    for index in mode_changes:
        if index not in explicit_patterns and isinstance(edges[index], dict):
            _fit_pattern(edges[index])


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
