"""YAML documents that remember where each value came from.

Pydantic reports an error location as a path (``('edges', 2, 'mode')``); a user
wants ``topologies/x.yaml line 12``. ``load_yaml`` returns the data and a map from
every path to its line, and ``ConfigError``s are phrased through ``describe``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from hopbench.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """Parsed YAML data plus the line of every key and item (1-based)."""

    source: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    # Paths replaced from the command line: errors there name the flag, not a line.
    overridden: dict[PathKey, str] = field(default_factory=dict)
    # What an override changed beyond what it said (a pattern its new mode cannot carry)
    notes: list[str] = field(default_factory=list)

    def where(self, path: Sequence[str | int]) -> str:
        """'FILE line N' for the deepest known prefix of path (or the flag that set it)."""
        key = tuple(path)
        for depth in range(len(key), -1, -1):
            prefix = key[:depth]
            if prefix in self.overridden:
                return f"{self.source} ({self.overridden[prefix]})"
            if prefix in self.lines:
                return f"{self.source} line {self.lines[prefix]}"
        return self.source

    def error(self, path: Sequence[str | int], message: str) -> ConfigError:
        dotted = format_path(path)
        return ConfigError(f"{self.where(path)}: {dotted + ': ' if dotted else ''}{message}")


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load_yaml(path: Path) -> Located:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the file: {exc.strerror or exc}") from exc
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from exc
    located = Located(source=source, data=data)
    if node is not None:
        _index_lines(node, (), located.lines)
    return located


def _index_lines(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines)


def raise_validation_error(located: Located, exc: pydantic.ValidationError) -> None:
    """Turn pydantic's first error into one ConfigError sentence; list the others."""
    errors = exc.errors(include_url=False)
    messages = [located.error(err["loc"], describe(err)) for err in errors]
    first = messages[0]
    if len(messages) > 1:
        rest = "\n".join(f"  also: {m}" for m in messages[1:6])
        raise ConfigError(f"{first}\n{rest}") from None
    raise first from None


def describe(err: Mapping[str, Any]) -> str:
    """One plain sentence for a pydantic error dict."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{value!r} is not one of {allowed}"
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known field (check the spelling; see docs/topologies.md for the fields)"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return f"{value!r}: {err['msg'].lower()}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{value!r}: {err['msg'].lower()}"
    return str(err["msg"])
