"""Merge what every load worker and every recorder saw into exact counts.

Histograms are merged as encoded HdrHistograms (never averaged percentiles);
sequence bitmaps are OR-ed, and a sequence number seen by two recorders of one
route (two replicas handling one message) counts as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from hopbench.config.topology import Route, Topology
from hopbench.measure.histogram import mean, new_histogram
from hopbench.measure.lateness import Lateness
from hopbench.measure.recorder import HopRecord, SeqBitmap


@dataclass(frozen=True, slots=True)
class SendSummary:
    """What one load worker sent, as it reports it at the end of its run."""

    worker: int
    sent: int  # every message this worker attempted, warm-up included
    first_measured_seq: int
    failed: str  # the sequence numbers whose send failed: an encoded SeqBitmap
    measure_start_ns: int
    last_sent_ns: int
    in_flight_waits: int  # sends that waited because max_in_flight was reached
    unsent: int  # due, but never sent: the worker fell too far behind its schedule
    send_lag: str  # actual - intended send, µs, measured window only: an encoded HdrHistogram
    # the sends over 1 ms late, and where the time they were behind went
    lateness: Lateness = field(default_factory=Lateness)

    @property
    def delivered(self) -> int:
        """Sends that did not fail, warm-up included: what the sinks should complete."""
        failed = SeqBitmap.decode(self.failed).as_int() & ((1 << self.sent) - 1)
        return self.sent - failed.bit_count()


def histogram_from(encoded: str) -> HdrHistogram:
    hist = new_histogram()
    hist.decode_and_add(encoded)
    return hist


def summarize(hist: HdrHistogram) -> dict[str, Any]:
    """Percentiles in µs, as HdrHistogram reports them (3 significant figures)."""
    if hist.get_total_count() == 0:
        return {"count": 0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0, "mean": 0.0}
    return {
        "count": hist.get_total_count(),
        "p50": hist.get_value_at_percentile(50),
        "p90": hist.get_value_at_percentile(90),
        "p99": hist.get_value_at_percentile(99),
        "p999": hist.get_value_at_percentile(99.9),
        "max": hist.get_max_value(),
        "mean": round(mean(hist), 1),
    }


@dataclass
class RouteTotals:
    route: Route
    label: str
    recorders: list[str] = field(default_factory=list)
    expected: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    warmup_expected: int = 0
    warmup_lost: int = 0
    negative: int = 0
    out_of_range: int = 0
    out_of_order: int = 0
    late: int = 0
    latency: HdrHistogram = field(default_factory=new_histogram)
    service_time: HdrHistogram = field(default_factory=new_histogram)
    hops: dict[str, HopRecord] = field(default_factory=dict)  # service -> its parts
    decomposed: int = 0  # completions split into parts
    send_lag_ns: int = 0  # their send lag, summed

    def add_hops(self, data: dict[str, Any]) -> None:
        for name, encoded in data["hops"].items():
            self.hops.setdefault(name, HopRecord()).merge_json(encoded)
        self.decomposed += data["decomposed"]
        self.send_lag_ns += data["send_lag_ns"]


@dataclass
class SentTotals:
    sent: int = 0  # measured window
    warmup_sent: int = 0
    errors: int = 0  # failed sends or requests in the measured window
    warmup_errors: int = 0


def merge(
    topology: Topology,
    workers: list[SendSummary],
    recorders: dict[str, dict[str, Any]],
) -> tuple[SentTotals, list[RouteTotals]]:
    """workers: what each load worker sent; recorders: name -> Recorder.to_json()."""
    sent = SentTotals()
    masks: dict[int, tuple[int, int, int]] = {}  # worker -> (all, measured, failed)
    for w in workers:
        all_mask = (1 << w.sent) - 1
        measured = all_mask & ~((1 << w.first_measured_seq) - 1)
        failed = SeqBitmap.decode(w.failed).as_int() & all_mask
        masks[w.worker] = (all_mask, measured, failed)
        sent.sent += measured.bit_count()
        sent.warmup_sent += (all_mask & ~measured).bit_count()
        sent.errors += (failed & measured).bit_count()
        sent.warmup_errors += (failed & ~measured).bit_count()

    totals: list[RouteTotals] = []
    for route in topology.expected_routes():
        key = ",".join(map(str, route))
        t = RouteTotals(route, topology.route_label(route))
        received: dict[int, int] = {}
        for name, rec in recorders.items():
            data = rec["routes"].get(key)
            if data is None:
                continue
            t.recorders.append(name)
            t.duplicated += data["duplicated"]
            t.negative += data["negative"]
            t.out_of_range += data["out_of_range"]
            t.out_of_order += data["out_of_order"]
            t.late += data["late"]
            t.latency.decode_and_add(data["latency"])
            t.service_time.decode_and_add(data["service_time"])
            t.add_hops(data)
            for worker, encoded in data["seen"].items():
                bits = SeqBitmap.decode(encoded).as_int()
                before = received.get(int(worker), 0)
                t.duplicated += (before & bits).bit_count()
                received[int(worker)] = before | bits
        for worker, (all_mask, measured, failed) in masks.items():
            got = received.get(worker, 0)
            ok = all_mask & ~failed
            t.expected += (ok & measured).bit_count()
            t.completed += (got & measured).bit_count()
            t.lost += (ok & measured & ~got).bit_count()
            t.warmup_expected += (ok & ~measured).bit_count()
            t.warmup_lost += (ok & ~measured & ~got).bit_count()
        totals.append(t)
    return sent, totals
