"""Cores of their own for the load workers, where the machine has cores to spare.

A load worker that shares its cores with the services it measures is late whenever
they are busy, and then the generator, not the system, sets the numbers. With
enough cores, each local load worker gets one core of its own and every other
process the run starts (the orchestrator, the services, an embedded broker, and the
replicas a fault restarts, which inherit it from the orchestrator) the rest: the
orchestrator narrows its own affinity before it starts anything, each load worker
is moved to its core once it runs, and the orchestrator's affinity is put back when
the run ends. Processes the run did not start (a shared RabbitMQ, PostgreSQL, other
users) keep every core: the placement says so.

"Enough" is one core per local load worker and at least ``SHARED_CORES`` for the
rest; below that nothing is pinned, and the result says why. Agents on other hosts
place themselves (or not): only local processes are placed here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SHARED_CORES = 2  # the least left to the services, brokers and orchestrator


@dataclass(frozen=True)
class CorePlan:
    workers: dict[int, int]  # load worker -> its core
    shared: tuple[int, ...]  # every other process the run starts


def plan_cores(available: Sequence[int], workers: int) -> CorePlan | None:
    """The highest cores to the load workers, one each; None when too few are left."""
    cores = sorted(available)
    if workers < 1 or len(cores) < workers + SHARED_CORES:
        return None
    own = cores[len(cores) - workers :]
    return CorePlan(workers=dict(enumerate(own)), shared=tuple(cores[: len(cores) - workers]))


def available_cores() -> list[int]:
    """The cores this process may run on (a container's cpuset, taskset), or []."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return []


def not_placed(available: Sequence[int], workers: int) -> dict[str, Any]:
    return {
        "load_workers": "shared",
        "why": (
            f"{len(available)} core(s) available; cores of their own for {workers} load "
            f"worker(s) need {workers + SHARED_CORES} (one each, {SHARED_CORES} for the rest)"
        ),
    }


def narrow_self(plan: CorePlan) -> set[int]:
    """Confine this process (and so every child it starts) to the shared cores; the
    affinity it had, to put back."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, plan.shared)
    return before


def pin_workers(plan: CorePlan, pids: dict[int, int]) -> dict[str, Any]:
    """Move each load worker (worker -> pid) to its core; the placement, in the result's
    words. A worker that could not be moved is named, with why."""
    placed: dict[str, list[int]] = {}
    failed: dict[str, str] = {}
    for worker, pid in sorted(pids.items()):
        core = plan.workers[worker]
        try:
            os.sched_setaffinity(pid, {core})
            placed[f"loadgen/{worker}"] = sorted(os.sched_getaffinity(pid))
        except OSError as exc:
            failed[f"loadgen/{worker}"] = f"{exc.strerror or exc}"
    found: dict[str, Any] = {
        "load_workers": "own cores" if placed and not failed else "shared",
        "cores": placed,
        "shared": list(plan.shared),
        "note": "processes the run did not start (a shared broker, a database) use every core",
    }
    if failed:
        found["failed"] = failed
    return found
