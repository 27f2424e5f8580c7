"""A topology from its file: YAML with line numbers, then ``--set`` and ``--mode``,
then every check (a clear error naming file, line, field and fix), then the graph."""

from __future__ import annotations

from pathlib import Path

import pydantic

from hopbench.config.overrides import apply_mode, apply_pattern, apply_sets
from hopbench.config.topology import Topology, TopologySpec, resolve
from hopbench.config.yamlsource import load_yaml, raise_validation_error
from hopbench.errors import ConfigError


def load_topology(
    path: Path,
    overrides: list[str] | None = None,
    mode: str | None = None,
    pattern: str | None = None,
) -> Topology:
    """Read, override (--set, then --mode, then --pattern), validate and resolve a
    topology file."""
    located = load_yaml(path)
    if not isinstance(located.data, dict):
        raise ConfigError(f"{path}: a topology is a YAML mapping with name, services and edges")
    apply_sets(located, overrides or [])
    if mode is not None:
        apply_mode(located, mode)
    if pattern is not None:
        apply_pattern(located, pattern)
    try:
        spec = TopologySpec.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise_validation_error(located, exc)
        raise AssertionError("unreachable") from exc
    return resolve(spec, str(path), located)
