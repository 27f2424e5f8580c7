"""Which received messages a process takes: decodable envelopes of this run, possible
for its schedule. Everything else is rejected: counted, never recorded.

Every transport screens what it receives here before any handler or waiting caller
sees it: a service's in-edges and a caller's replies alike. A message is rejected when

- it is not a hopbench envelope (undecodable, or an empty record);
- its ``run_id`` is another run's;
- its load worker is not one of the run's, or its sequence number is beyond what that
  worker's schedule could send;
- its intended send time lies outside the run's schedule, or its intended or actual
  send or a hop's stamp before the schedule's start or after the moment it arrived —
  more than ``SLACK_NS`` out either way, so agents' clocks aligned to within a second
  never reject a real message.

Before the schedule's start is known (a process gets it with the load's start), the
times are held to the schedule's length before and after now instead.

The transport dead-letters what is rejected where its broker can keep it (hopbench.
transports.kafka, .rabbitmq) and refuses it to the sender otherwise (HTTP, gRPC).
Authenticity is not checked: an envelope forged with a possible worker, sequence and
time is indistinguishable from the real one (the real one then counts as duplicated).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from hopbench.config.settings import LoadSpec
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope

log = logging.getLogger(__name__)
SLACK_NS = 1_000_000_000
# No load worker sends a million messages a second: the closed loop's sequence bound.
CLOSED_LOOP_CEILING_PER_S = 1_000_000
MAX_HOPS = 256


def seq_limit(load: LoadSpec) -> int:
    """Sequence numbers of one load worker at or beyond this are impossible.

    An open loop's worker is scheduled about (warm-up + duration) × rate / workers
    messages: the bound adds ten standard deviations of a Poisson count (and a few
    for rounding), so no schedule a seed can draw reaches it."""
    span_s = load.warmup_s + load.duration_s
    if load.closed:
        return math.ceil(span_s * CLOSED_LOOP_CEILING_PER_S) + 1
    mean = span_s * load.rate / load.workers
    return math.ceil(mean + 10 * math.sqrt(mean)) + 16


@dataclass
class Admission:
    """One process's screen. Rejections are counted here (``rejected``), the first in
    words (``first``); transports share the process's counts by summing."""

    run_id: str
    load: LoadSpec | None = None  # None: the load is not known, only the run id is checked
    start_ns: int | None = None  # the schedule's first send, once known
    rejected: int = 0
    first: str | None = None
    last: str = ""  # why the latest rejection was made
    _limit: int = field(default=0, init=False, repr=False)
    _span_ns: int = field(default=0, init=False, repr=False)  # warm-up and measured window

    def __post_init__(self) -> None:
        if self.load is not None:
            self._limit = seq_limit(self.load)
            self._span_ns = int((self.load.warmup_s + self.load.duration_s) * 1e9)

    def open(self, start_ns: int) -> None:
        """The schedule starts at start_ns (the run's clock): hold times to it."""
        self.start_ns = start_ns

    def screen(
        self,
        body: bytes | None,
        now_ns: int,
        where: str,
        decode: Callable[[bytes], Envelope] | None = None,
    ) -> Envelope | str:
        """The envelope in body, or why it is rejected (then counted, the first logged).
        decode: the edge's encoding and compression (default: protobuf as it is)."""
        why: str | None
        env: Envelope | None = None
        if not body:
            why = "an empty message"
        else:
            try:
                env = (decode or Envelope.FromString)(body)
                why = self.check(env, now_ns)
            except DecodeError as exc:
                why = f"not a hopbench envelope ({len(body)} bytes: {exc})"
            except TransportError as exc:  # the codec's: not its encoding or compression
                why = str(exc)
        if why is None and env is not None:
            return env
        why = why or "not a hopbench envelope"
        self.reject(where, why)
        return why

    def reject(self, where: str, why: str) -> None:
        self.rejected += 1
        self.last = why
        if self.first is None:
            self.first = f"{where}: {why}"
            log.warning("rejected on %s: %s (the first; later ones are counted)", where, why)

    def check(self, env: Envelope, now_ns: int) -> str | None:
        """Why this envelope is impossible for the run, or None if it is possible."""
        if env.run_id != self.run_id:
            return f"of another run ({_clip(env.run_id)!r}, this is {self.run_id!r})"
        load = self.load
        if load is None:
            return None
        if env.worker >= load.workers:
            return f"from load worker {env.worker}; the run has {load.workers}"
        if env.seq >= self._limit:
            return f"sequence number {env.seq}: worker {env.worker} sends fewer than {self._limit}"
        hops = env.hops
        if len(hops) > MAX_HOPS:
            return f"{len(hops)} hops"
        # intended: inside the schedule and not after now; the send (a worker behind its
        # schedule sends late) and every stamp: from the schedule's start until now
        latest = now_ns + SLACK_NS
        if self.start_ns is not None:
            earliest = self.start_ns - SLACK_NS
            intended_latest = min(self.start_ns + self._span_ns + SLACK_NS, latest)
        else:
            earliest, intended_latest = now_ns - self._span_ns - SLACK_NS, latest
        intended_ns = env.intended_ns
        if not earliest <= intended_ns <= intended_latest:
            return _outside("intended", intended_ns, earliest, intended_latest)
        sent_ns = env.sent_ns
        if sent_ns and not earliest <= sent_ns <= latest:
            return _outside("sent", sent_ns, earliest, latest)
        for hop in hops:  # the stamps the breakdown reads; zero: not stamped
            arrived_ns, received_ns = hop.arrived_ns, hop.received_ns
            if arrived_ns and not earliest <= arrived_ns <= latest:
                return _outside("a hop's arrival", arrived_ns, earliest, latest)
            if received_ns and not earliest <= received_ns <= latest:
                return _outside("a hop's start", received_ns, earliest, latest)
        return None


def _outside(what: str, t_ns: int, earliest: int, latest: int) -> str:
    if t_ns < earliest:
        return f"{what} time {(earliest - t_ns) / 1e9:.3f} s before the schedule's start"
    return f"{what} time {(t_ns - latest) / 1e9:.3f} s after what is possible"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"
