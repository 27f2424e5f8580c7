"""Cells: which runs are repeats of one another, and which rows may be ranked together.

A cell is one point of everything a suite or the command line can vary: the variant
(its edges' modes, patterns and settings), the load model (rate, or users and think
time; arrival), the payload, the replicas, the load workers, the in-flight limit,
the window and the run's settings. Only runs with equal keys are repeats. The key is
made from what each run recorded, never parsed from a label, so that two results
files can be matched cell by cell.

A row of the summary is one cell and one route, and says what it measures: a round
trip as the caller sees it, or a one-way delivery to a named service. Rows rank only
within their group: the same route of the same topology, under the same load and
every other dimension, differing in the variant alone.
"""

from __future__ import annotations

from typing import Any

from hopbench.config.settings import LoadSpec, Settings
from hopbench.results.schema import RunResult

# what a cell id shows, in order (the key holds every dimension; these tell cells apart
# to a reader)
ID_DIMENSIONS = ("topology", "variant", "pattern", "payload", "replicas", "load")
# compared within a group (so not part of the group): what the variant is
VARIANT_DIMENSIONS = frozenset({"variant", "edges", "pattern"})
# columns the table and report add when their values differ between rows
SHOWN_WHEN_VARYING = (
    "topology", "pattern", "payload", "replicas", "workers", "in-flight", "settings", "window",
)  # fmt: skip
_DEFAULTS = {
    "settings": Settings().model_dump(mode="json"),
    "max_in_flight": LoadSpec.model_fields["max_in_flight"].default,
}


def load_key(load: dict[str, Any]) -> str:
    """The load model in words: '500/s', '500/s poisson seed 3', 'C=4 think 10 ms'."""
    spec = LoadSpec.model_validate(load)
    if spec.closed:
        return spec.label + (f" think {spec.think_ms:g} ms" if spec.think_ms else "")
    return spec.label + (f" poisson seed {spec.seed}" if spec.arrival == "poisson" else "")


def dimensions(run: RunResult) -> dict[str, str]:
    """The run's cell: every dimension by name, each as a short string."""
    defaults = _DEFAULTS["settings"]
    changed = {k: v for k, v in run.settings.items() if defaults.get(k) != v}
    in_flight = run.load.get("max_in_flight", _DEFAULTS["max_in_flight"])
    return {
        "topology": run.topology,
        "variant": run.variant or run.mode,
        "edges": "; ".join(
            f"{e.name} {e.mode} {e.pattern}" + "".join(f" {k}={v}" for k, v in e.settings.items())
            for e in run.edges
        ),
        "pattern": "+".join(dict.fromkeys(e.pattern for e in run.edges)),
        "load": load_key(run.load),
        "payload": f"{run.payload_bytes}B",
        "replicas": " ".join(f"{name}x{n}" for name, n in run.replicas.items()),
        "workers": f"{run.workers} worker(s)",
        "in-flight": f"max {in_flight} in flight",
        "window": f"{run.warmup_s:g}+{run.duration_s:g} s",
        "settings": " ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "defaults",
    }


def cell_id(run: RunResult) -> str:
    """The cell in a line: 'chain http request-reply 100B gatewayx1 workerx1 500/s', and
    its settings when they are not the defaults."""
    dims = dimensions(run)
    extra = [dims["settings"]] if dims["settings"] != "defaults" else []
    return " ".join([*(dims[d] for d in ID_DIMENSIONS), *extra])


def group_of(run: RunResult, route: str, without: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The rows a row of this run and route ranks against share this (``without``:
    more dimensions to leave out, e.g. the load of a search's knee)."""
    skip = VARIANT_DIMENSIONS | without
    return (route, *(f"{k}={v}" for k, v in sorted(dimensions(run).items()) if k not in skip))


def varying(runs: list[RunResult]) -> list[str]:
    """The dimensions (of SHOWN_WHEN_VARYING) whose values differ between these runs."""
    values = [dimensions(r) for r in runs]
    return [d for d in SHOWN_WHEN_VARYING if len({v[d] for v in values}) > 1]


def variant_label(run: RunResult) -> str:
    """The variant and the brokers that produced its numbers, e.g.
    'kafka (Tansu 0.6.0, embedded)', 'rabbitmq (3.10.8 at 127.0.0.1:5672)'."""
    name = run.variant or run.mode
    wheres = [(mode, b["where"]) for mode, b in run.brokers.items() if b.get("where")]
    if not wheres:
        return name
    if len(wheres) == 1:
        return f"{name} ({wheres[0][1]})"
    return f"{name} (" + "; ".join(f"{mode}: {where}" for mode, where in wheres) + ")"
