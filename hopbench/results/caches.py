"""Each service's cache over the measured window, its replicas merged
(docs/results.md, ``caches``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hopbench.config.topology import Topology
from hopbench.measure.cachestats import CacheStats
from hopbench.results.schema import CacheResult, Percentiles


def cache_results(topology: Topology, reports: Mapping[str, dict[str, Any]]) -> list[CacheResult]:
    """reports: process name ("worker/0") -> CacheStats JSON; one row per service with
    a cache, in the topology's order (a service none of whose replicas reported has none)."""
    merged: dict[str, CacheStats] = {}
    for process, data in reports.items():
        service = process.rpartition("/")[0]
        merged.setdefault(service, CacheStats()).merge_json(data)
    rows = []
    for name, svc in topology.services.items():
        stats, spec = merged.get(name), svc.cache
        if stats is None or spec is None:
            continue
        lookups = stats.hits + stats.misses
        rows.append(
            CacheResult(
                service=name,
                store=spec.store,
                ttl_ms=spec.ttl_ms,
                keys=spec.keys,
                skew=spec.skew,
                update_rate=spec.update_rate,
                lookups=lookups,
                hits=stats.hits,
                misses=stats.misses,
                hit_ratio=round(stats.hits / lookups, 4) if lookups else 0.0,
                stale=stats.stale,
                stale_ratio=round(stats.stale / stats.hits, 4) if stats.hits else 0.0,
                hit_us=Percentiles(**stats.summary("hit_us")),
                miss_us=Percentiles(**stats.summary("miss_us")),
                age_us=Percentiles(**stats.summary("age_us")),
            )
        )
    return rows
