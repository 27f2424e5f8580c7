"""Comparison suites: one topology, a matrix of variations, every cell run in turn.

A suite names a topology and a matrix — modes (each crossed with every pattern of
``patterns``, when given) or per-edge assignments (run as their ``--set`` lines say,
patterns included), rates or a search for the knee, payload sizes, replica counts,
repeats — plus an SLO that every run is judged against. Each cell is one run (or one
search); results are written after every cell, and ``--resume`` skips the cells a
previous, interrupted command finished.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.settings import unsupported_lever
from hopbench.config.topology import Mode, Pattern, Topology
from hopbench.config.yamlsource import Located, load_yaml, raise_validation_error
from hopbench.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteLoad(_Strict):
    duration_s: float = Field(10, gt=0)
    warmup_s: float = Field(2, ge=0)
    workers: int = Field(1, ge=1)
    arrival: Literal["constant", "poisson"] = "constant"
    max_in_flight: int = Field(10_000, ge=1)
    grace_s: float = Field(5, gt=0)
    start_rate: float = Field(100, gt=0, description="where find_max starts")


class Matrix(_Strict):
    modes: list[Mode] = []
    patterns: list[Pattern] = Field(
        [], description="every edge's pattern, crossed with each of modes (not assignments)"
    )
    assignments: dict[str, list[str]] = Field(
        {}, description="name -> --set overrides, e.g. edges.gateway->worker.mode=kafka"
    )
    rates: list[float] = []
    find_max: bool = False
    payloads: list[int] = [100]
    replicas: dict[str, list[int]] = Field({}, description="service -> replica counts to try")
    repeats: int = Field(1, ge=1)


class SuiteSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    topology: str  # relative to the suite file
    slo_p99_ms: float | None = Field(None, gt=0)
    settings: dict[str, Any] = {}
    load: SuiteLoad = SuiteLoad()
    matrix: Matrix


@dataclass(frozen=True)
class Cell:
    id: str
    topology: Topology
    load: LoadSpec
    find_max: bool
    variant: str = ""  # the mode or assignment's name: what the suite compares


Variant = tuple[str, list[str], str | None, str | None]  # name, --set lines, mode, pattern


def _variants(matrix: Matrix) -> list[Variant]:
    """Each mode (once per pattern, when patterns are given), then each assignment."""
    patterns: list[str | None] = list(matrix.patterns) or [None]
    variants: list[Variant] = [(m, [], m, p) for m in matrix.modes for p in patterns]
    variants += [(name, sets, None, None) for name, sets in matrix.assignments.items()]
    return variants or [("as-written", [], None, None)]


def load_suite(path: Path) -> tuple[SuiteSpec, list[Cell], Settings]:
    located = load_yaml(path)
    try:
        suite = SuiteSpec.model_validate(located.data)
    except pydantic.ValidationError as exc:
        raise_validation_error(located, exc)
        raise AssertionError("unreachable") from exc
    matrix = suite.matrix
    if bool(matrix.rates) == matrix.find_max:
        raise located.error(("matrix",), "give either rates (a list) or find_max: true")
    try:
        settings = Settings.model_validate(suite.settings)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise located.error(("settings", *err["loc"]), err["msg"]) from None
    if matrix.patterns and not matrix.modes:
        raise located.error(
            ("matrix", "patterns"),
            "patterns cross the modes: give modes too (an assignment sets its own patterns "
            "with edges.A->B.pattern=...)",
        )
    topology_path = (path.parent / suite.topology).resolve()
    combos = [
        dict(zip(matrix.replicas, counts, strict=True))
        for counts in itertools.product(*matrix.replicas.values())
    ]
    cells: list[Cell] = []
    for (variant, sets, mode, pattern), payload, combo in itertools.product(
        _variants(matrix), matrix.payloads, combos
    ):
        overrides = sets + [f"services.{svc}.replicas={n}" for svc, n in combo.items()]
        try:
            topology = load_topology(topology_path, overrides, mode, pattern)
        except ConfigError as exc:
            raise ConfigError(f"{path}: cell {variant}: {exc}") from None
        try:
            topology.check_settings(settings)
        except ConfigError as exc:
            raise ConfigError(f"{path}: cell {variant}: {exc}") from None
        shape = [variant, *([pattern] if pattern else []), f"{payload}B"]
        shape += [f"{svc}x{n}" for svc, n in combo.items()]
        rates: list[float | None] = [None] if matrix.find_max else list(matrix.rates)
        for rate in rates:
            load = LoadSpec(
                rate=rate or suite.load.start_rate,
                duration_s=suite.load.duration_s,
                warmup_s=suite.load.warmup_s,
                payload_bytes=payload,
                workers=suite.load.workers,
                arrival=suite.load.arrival,
                max_in_flight=suite.load.max_in_flight,
            )
            for repeat in range(matrix.repeats):
                label = [*shape, "find-max" if rate is None else f"{rate:g}/s"]
                if matrix.repeats > 1:
                    label.append(f"#{repeat + 1}")
                cells.append(Cell(" ".join(label), topology, load, rate is None, variant))
    _check_levers(cells, settings, located)
    return suite, cells, settings


def _check_levers(cells: list[Cell], settings: Settings, located: Located) -> None:
    """The suite's settings ask no edge of any cell for a lever its mode cannot carry."""
    for cell in cells:
        for edge in cell.topology.edges:
            refused = unsupported_lever(edge.mode, settings.with_overrides(edge.settings))
            if refused is not None:
                name, why = refused
                raise located.error(
                    ("settings", name), f"cell {cell.variant}: edge {edge.name}: {why}"
                )
