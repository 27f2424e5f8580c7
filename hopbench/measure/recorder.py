"""The one recorder every mode uses: where a flow ends, ``complete`` is called.

Latency is ``completion − intended send`` (coordinated-omission-correct) and
service time is ``completion − actual send``, each in an HdrHistogram of µs with 3
significant figures. Every sequence number seen is kept in a bitmap per load
worker, so ``completed``, ``lost`` and ``duplicated`` are exact after merging.
Warm-up messages are counted but not measured. Each measured completion is also
split into parts per hop (hopbench.measure.breakdown): every part in an HdrHistogram
per service, and the exact sums, in ns, of the parts on the critical path, from which
the mean end-to-end latency is decomposed.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from hopbench.measure.breakdown import PARTS, HopParts, decompose
from hopbench.measure.histogram import new_histogram, record
from hopbench.measure.series import SecondSeries
from hopbench.proto.hopbench_pb2 import Envelope


class SeqBitmap:
    """Sequence numbers seen, as a growable bitmap (1 bit a message)."""

    __slots__ = ("bits",)

    def __init__(self, bits: bytearray | None = None) -> None:
        self.bits = bits if bits is not None else bytearray()

    def add(self, seq: int) -> bool:
        """Mark seq; False if it was already marked (a duplicate)."""
        byte, bit = divmod(seq, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        mask = 1 << bit
        if self.bits[byte] & mask:
            return False
        self.bits[byte] |= mask
        return True

    def as_int(self) -> int:
        return int.from_bytes(self.bits, "little")

    def encode(self) -> str:
        return base64.b64encode(zlib.compress(bytes(self.bits))).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> SeqBitmap:
        return cls(bytearray(zlib.decompress(base64.b64decode(text))))


def _encode(hist: HdrHistogram) -> str:
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


@dataclass
class HopRecord:
    """One service's parts on one route: every occurrence in a histogram per part (µs),
    and the sums of the parts while the service was on the critical path (ns)."""

    parts: tuple[HdrHistogram, ...] = field(
        default_factory=lambda: tuple(new_histogram() for _ in PARTS)
    )
    path_ns: list[int] = field(default_factory=lambda: [0] * len(PARTS))
    on_path: int = 0  # completions whose critical path passed this service

    def add(self, hop: HopParts) -> None:
        transit, wait, work, rest = self.parts
        _, transit_ns, wait_ns, work_ns, rest_ns, on_path = hop
        record(transit, transit_ns // 1000)
        record(wait, wait_ns // 1000)
        record(work, work_ns // 1000)
        if rest_ns is not None:
            record(rest, rest_ns // 1000)
        if on_path:
            self.on_path += 1
            path = self.path_ns
            path[0] += transit_ns
            path[1] += wait_ns
            path[2] += work_ns
            path[3] += rest_ns or 0

    def merge_json(self, data: dict[str, Any]) -> None:
        """Add another recorder's record of this service (exact: histograms and sums)."""
        for hist, name in zip(self.parts, PARTS, strict=True):
            hist.decode_and_add(data[name])
        self.path_ns = [a + b for a, b in zip(self.path_ns, data["path_ns"], strict=True)]
        self.on_path += data["on_path"]

    def to_json(self) -> dict[str, Any]:
        encoded = {name: _encode(h) for name, h in zip(PARTS, self.parts, strict=True)}
        return {**encoded, "path_ns": list(self.path_ns), "on_path": self.on_path}


@dataclass
class RouteRecord:
    """What one recorder saw on one route."""

    latency: HdrHistogram = field(default_factory=new_histogram)
    service_time: HdrHistogram = field(default_factory=new_histogram)
    seen: dict[int, SeqBitmap] = field(default_factory=dict)  # worker -> seqs
    completed: int = 0
    warmup_completed: int = 0
    duplicated: int = 0
    negative: int = 0  # completion before intended send: a clock problem, never hidden
    out_of_range: int = 0
    out_of_order: int = 0  # arrived after a later message of the same load worker
    late: int = 0  # completed after the grace period (still counted, still measured)
    newest_seq: dict[int, int] = field(default_factory=dict)  # worker -> highest seq seen
    # per service along the route: its parts; keyed by service, since a gather's
    # replies come in any order
    hops: dict[str, HopRecord] = field(default_factory=dict)
    decomposed: int = 0  # completions split into parts
    send_lag_ns: int = 0  # their load generator's send lag, summed

    def record_hops(
        self,
        route: tuple[int, ...],
        env: Envelope,
        completion_ns: int,
        callers: dict[int, str],
        request_reply: frozenset[int],
    ) -> None:
        found = decompose(env, completion_ns, len(route), callers, request_reply)
        if found is None:
            return
        self.decomposed += 1
        self.send_lag_ns += found.send_lag_ns
        for hop in found.hops:
            hop_record = self.hops.get(hop.service)
            if hop_record is None:
                hop_record = self.hops[hop.service] = HopRecord()
            hop_record.add(hop)

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": _encode(self.latency),
            "service_time": _encode(self.service_time),
            "seen": {str(w): bm.encode() for w, bm in self.seen.items()},
            "completed": self.completed,
            "warmup_completed": self.warmup_completed,
            "duplicated": self.duplicated,
            "negative": self.negative,
            "out_of_range": self.out_of_range,
            "out_of_order": self.out_of_order,
            "late": self.late,
            "hops": {name: hop.to_json() for name, hop in self.hops.items()},
            "decomposed": self.decomposed,
            "send_lag_ns": self.send_lag_ns,
        }


class Recorder:
    """Completions seen by one process, keyed by route (a tuple of edge indices)."""

    def __init__(
        self,
        callers: dict[int, str] | None = None,
        origin_ns: int = 0,
        request_reply: frozenset[int] = frozenset(),
    ) -> None:
        """callers: edge index -> the service that sends on it; request_reply: the
        request-reply edges' indices (both for the parts of each hop)."""
        self.callers = callers or {}
        self.request_reply = request_reply
        self.routes: dict[tuple[int, ...], RouteRecord] = {}
        self.series = SecondSeries(origin_ns)
        self.late_after_ns: int | None = None  # set when the grace period runs out

    def start(self, origin_ns: int) -> None:
        """The measured window starts at origin_ns: the time series counts from it."""
        self.series.origin_ns = origin_ns

    def complete(self, route: tuple[int, ...], env: Envelope, now_ns: int) -> None:
        # each envelope field is read once: a protobuf read costs more than a local's
        rec = self.routes.get(route)
        if rec is None:
            rec = self.routes[route] = RouteRecord()
        worker, seq = env.worker, env.seq
        seen = rec.seen.get(worker)
        if seen is None:
            seen = rec.seen[worker] = SeqBitmap()
        if not seen.add(seq):
            rec.duplicated += 1
            return
        if seq < rec.newest_seq.get(worker, -1):
            rec.out_of_order += 1
        else:
            rec.newest_seq[worker] = seq
        # every completion counts toward throughput in its second, warm-up or not:
        # in a steady state what finishes in a window is what the system delivers
        if env.warmup:
            self.series.completed(now_ns, None)
            rec.warmup_completed += 1
            return
        rec.completed += 1
        latency_us = (now_ns - env.intended_ns) // 1000
        if latency_us < 0:
            rec.negative += 1
        if self.late_after_ns is not None and now_ns > self.late_after_ns:
            rec.late += 1
        ok = record(rec.latency, latency_us)
        ok = record(rec.service_time, (now_ns - env.sent_ns) // 1000) and ok
        if not ok:
            rec.out_of_range += 1
        rec.record_hops(route, env, now_ns, self.callers, self.request_reply)
        self.series.completed(now_ns, latency_us)

    def completed_count(self) -> int:
        return sum(r.completed + r.warmup_completed for r in self.routes.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": {",".join(map(str, k)): v.to_json() for k, v in self.routes.items()},
            "series": self.series.to_json(),
        }
