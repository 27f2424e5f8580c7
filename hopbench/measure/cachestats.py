"""What a service's cache saw: lookups that hit and missed, how long each took, and
the age of the values it served.

One ``CacheStats`` per replica counts the measured window (warm-up messages warm the
cache but are not counted); its JSON travels in the replica's report, and the
replicas of a service are merged by adding counts and histograms (never averaging
percentiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from hopbench.measure.histogram import new_histogram, record
from hopbench.measure.merge import histogram_from, summarize

HISTOGRAMS = ("hit_us", "miss_us", "age_us")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stale: int = 0  # hits whose value the source had changed since it was loaded
    # each lookup's time (a hit: the lookup; a miss: lookup, the miss's work, the store)
    # and the age of each value a hit served (now − when it was loaded)
    histograms: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: new_histogram() for name in HISTOGRAMS}
    )

    def hit(self, took_ns: int, age_ns: int, stale: bool) -> None:
        self.hits += 1
        self.stale += stale
        record(self.histograms["hit_us"], took_ns // 1000)
        record(self.histograms["age_us"], age_ns // 1000)

    def miss(self, took_ns: int) -> None:
        self.misses += 1
        record(self.histograms["miss_us"], took_ns // 1000)

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stale": self.stale,
            **{name: h.encode().decode("ascii") for name, h in self.histograms.items()},
        }

    def merge_json(self, data: dict[str, Any]) -> None:
        self.hits += int(data["hits"])
        self.misses += int(data["misses"])
        self.stale += int(data["stale"])
        for name in HISTOGRAMS:
            self.histograms[name].add(histogram_from(data[name]))

    def summary(self, name: str) -> dict[str, Any]:
        """One histogram's percentiles, µs (hdrhistogram's 3 significant figures)."""
        return summarize(self.histograms[name])
