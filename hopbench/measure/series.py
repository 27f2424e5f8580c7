"""Per-second time series, bounded in memory.

Seconds are counted from ``origin_ns`` (the start of the measured window, so the
warm-up is negative). A second's latency histogram stays live while completions
may still land in it and is then kept only in encoded form, and the histogram is
reused: a ten-minute run costs a few hundred small strings and four histograms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from hopbench.measure.histogram import new_histogram, record

LIVE_SECONDS = 3  # completions land at most this far behind the newest second


@dataclass(frozen=True, slots=True)
class SecondSnapshot:
    """One second of one process, for the live display: its counts and its latency
    histogram (encoded, so that the orchestrator can merge processes exactly)."""

    second: int
    sent: int
    completed: int
    latency: str | None  # an encoded HdrHistogram, None when nothing completed


class SecondSeries:
    def __init__(self, origin_ns: int = 0) -> None:
        self.origin_ns = origin_ns
        self.counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.maxima: dict[str, dict[int, int]] = defaultdict(dict)
        self._live: dict[int, HdrHistogram] = {}
        self._closed: dict[int, str] = {}
        self._spare: list[HdrHistogram] = []
        self._newest = -(1 << 62)

    def second(self, now_ns: int) -> int:
        return (now_ns - self.origin_ns) // 1_000_000_000

    def count(self, name: str, now_ns: int, n: int = 1) -> None:
        self.counts[name][self.second(now_ns)] += n

    def maximum(self, name: str, now_ns: int, value: int) -> None:
        bucket = self.maxima[name]
        k = self.second(now_ns)
        if value > bucket.get(k, -1):
            bucket[k] = value

    def completed(self, now_ns: int, latency_us: int | None) -> None:
        """One completion in its second, and its latency (None: not measured, warm-up)."""
        k = (now_ns - self.origin_ns) // 1_000_000_000
        self.counts["completed"][k] += 1
        if latency_us is not None:
            self._record_latency(k, latency_us)

    def _record_latency(self, k: int, latency_us: int) -> None:
        hist = self._live.get(k)
        if hist is None:
            hist = self._spare.pop() if self._spare else new_histogram()
            if k in self._closed:  # very late: reopen it, rare
                hist.decode_and_add(self._closed.pop(k))
            self._live[k] = hist
            if k > self._newest:
                self._newest = k
                self._close_before(k - LIVE_SECONDS)
        record(hist, latency_us)

    def _close_before(self, oldest_live: int) -> None:
        for k in [k for k in self._live if k < oldest_live]:
            hist = self._live.pop(k)
            self._closed[k] = hist.encode().decode("ascii")
            # Reuse it: a histogram and its encoder form a reference cycle holding two
            # large count arrays, which only a full collection would free.
            hist.reset()
            self._spare.append(hist)

    def snapshot(self, k: int) -> SecondSnapshot:
        """One second, for a live display."""
        hist = self._live.get(k)
        if hist is not None and hist.get_total_count():
            encoded: str | None = hist.encode().decode("ascii")
        else:
            encoded = self._closed.get(k)
        return SecondSnapshot(
            second=k,
            sent=self.counts["sent"].get(k, 0) if "sent" in self.counts else 0,
            completed=self.counts["completed"].get(k, 0) if "completed" in self.counts else 0,
            latency=encoded,
        )

    def to_json(self) -> dict[str, Any]:
        latency = dict(self._closed)
        latency.update({k: h.encode().decode("ascii") for k, h in self._live.items()})
        return {
            "origin_ns": self.origin_ns,
            "latency": {str(k): v for k, v in sorted(latency.items())},
            "counts": {n: {str(k): v for k, v in c.items()} for n, c in self.counts.items()},
            "maxima": {n: {str(k): v for k, v in m.items()} for n, m in self.maxima.items()},
        }


def merge_series(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per second across processes: counts summed, maxima summed (one per
    process: the in-flight counts of several workers add up), latency merged.

    One histogram is reused second by second, so a long run costs no more memory
    to merge than a short one.
    """
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    encoded: dict[int, list[str]] = defaultdict(list)
    for one in series:
        for name, by_second in [*one["counts"].items(), *one["maxima"].items()]:
            for k, v in by_second.items():
                counts[name][int(k)] += v
        for k, text in one["latency"].items():
            encoded[int(k)].append(text)
    hist = new_histogram()
    rows = []
    for k in sorted({k for c in counts.values() for k in c} | set(encoded)):
        hist.reset()
        for text in encoded.get(k, ()):
            hist.decode_and_add(text)
        has = hist.get_total_count() > 0
        rows.append(
            {
                "t_s": k,
                "sent": counts["sent"].get(k, 0),
                "completed": counts["completed"].get(k, 0),
                "errors": counts["errors"].get(k, 0),
                "in_flight": counts["in_flight"].get(k, 0),
                "p50_us": hist.get_value_at_percentile(50) if has else 0,
                "p99_us": hist.get_value_at_percentile(99) if has else 0,
                "max_us": hist.get_max_value() if has else 0,
            }
        )
    return rows
