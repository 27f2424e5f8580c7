"""The one recorder every mode uses: where a flow ends, ``complete`` is called.

Latency is ``completion − intended send`` (coordinated-omission-correct) and
service time is ``completion − actual send``, each in an HdrHistogram of µs with 3
significant figures. Every sequence number seen is kept in a bitmap per load
worker, so ``completed``, ``lost`` and ``duplicated`` are exact after merging.
Warm-up messages are counted but not measured.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

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
    # per service along the route: transit into it (from its caller's send) and the
    # work in it; keyed by service, since a gather's replies come in any order
    hops: dict[str, tuple[HdrHistogram, HdrHistogram]] = field(default_factory=dict)

    def record_hops(self, env: Envelope, callers: dict[int, str]) -> None:
        forwarded: dict[str, int] = {}
        for hop in env.hops:
            caller = callers.get(hop.edge, "")
            sent_ns = forwarded.get(caller, env.sent_ns)  # the load generator: its send
            pair = self.hops.get(hop.service)
            if pair is None:
                pair = self.hops[hop.service] = (new_histogram(), new_histogram())
            record(pair[0], (hop.received_ns - sent_ns) // 1000)
            record(pair[1], (hop.forwarded_ns - hop.received_ns) // 1000)
            forwarded[hop.service] = hop.forwarded_ns

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": self.latency.encode().decode("ascii"),
            "service_time": self.service_time.encode().decode("ascii"),
            "seen": {str(w): bm.encode() for w, bm in self.seen.items()},
            "completed": self.completed,
            "warmup_completed": self.warmup_completed,
            "duplicated": self.duplicated,
            "negative": self.negative,
            "out_of_range": self.out_of_range,
            "out_of_order": self.out_of_order,
            "late": self.late,
            "hops": {
                name: [t.encode().decode("ascii"), w.encode().decode("ascii")]
                for name, (t, w) in self.hops.items()
            },
        }


class Recorder:
    """Completions seen by one process, keyed by route (a tuple of edge indices)."""

    def __init__(self, callers: dict[int, str] | None = None, origin_ns: int = 0) -> None:
        """callers: edge index -> the service that sends on it (for hop transit)."""
        self.callers = callers or {}
        self.routes: dict[tuple[int, ...], RouteRecord] = {}
        self.foreign = 0  # messages of another run: ignored, counted
        self.series = SecondSeries(origin_ns)
        self.late_after_ns: int | None = None  # set when the grace period runs out

    def start(self, origin_ns: int) -> None:
        """The measured window starts at origin_ns: the time series counts from it."""
        self.series.origin_ns = origin_ns

    def complete(self, route: tuple[int, ...], env: Envelope, now_ns: int) -> None:
        rec = self.routes.get(route)
        if rec is None:
            rec = self.routes[route] = RouteRecord()
        seen = rec.seen.get(env.worker)
        if seen is None:
            seen = rec.seen[env.worker] = SeqBitmap()
        if not seen.add(env.seq):
            rec.duplicated += 1
            return
        newest = rec.newest_seq.get(env.worker, -1)
        if env.seq < newest:
            rec.out_of_order += 1
        else:
            rec.newest_seq[env.worker] = env.seq
        # every completion counts toward throughput in its second, warm-up or not:
        # in a steady state what finishes in a window is what the system delivers
        self.series.count("completed", now_ns)
        if env.warmup:
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
        rec.record_hops(env, self.callers)
        self.series.latency(now_ns, latency_us)

    def completed_count(self) -> int:
        return sum(r.completed + r.warmup_completed for r in self.routes.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": {",".join(map(str, k)): v.to_json() for k, v in self.routes.items()},
            "foreign": self.foreign,
            "series": self.series.to_json(),
        }
