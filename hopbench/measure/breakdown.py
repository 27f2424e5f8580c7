"""Where the time of one completion goes, from the stamps its hops carry.

Every stamp is on the run's one clock (hopbench.clock), so differences between stamps
taken in different processes are durations. A completion's *path* runs from the
intended send to the completion through consecutive stamps, and each step is one part:

- the load generator: **send lag**, intended → actual send;
- each hop on the path: **transit** (the previous send → the transport has it, decoded),
  **wait** (→ a handler slot was free), **work** (→ its work done), and **rest**: its own
  time after its work on this route (the wait after the reply a gather needed last,
  its publishing, building its reply, and the reply's trip back to its caller).

The path is the route's hops in order (the *spine*: the edges that carried the message
to the service that records it), then from the last of them down the request-reply call
tree, following at each gather the reply that came back last: parallel calls overlap,
so only that one is on the critical path. Parts are consecutive differences, so on the
path they add up to completion − intended exactly, per message. Hops off the path (the
other branches of a gather) get their parts too, for their own percentiles.

A stamp that was not taken (0) falls back to the one before it, so the sum still holds
and the missing step counts in the part after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hopbench.proto.hopbench_pb2 import Envelope, Hop

PARTS = ("transit", "wait", "work", "rest")


@dataclass(frozen=True, slots=True)
class HopParts:
    """One hop of one completion, in ns (negative only across hosts' clock error)."""

    service: str
    transit_ns: int
    wait_ns: int
    work_ns: int
    rest_ns: int | None  # None: on this route its time ends when its work does
    on_path: bool


@dataclass(frozen=True, slots=True)
class Breakdown:
    send_lag_ns: int
    hops: tuple[HopParts, ...]  # in envelope order

    def path_total_ns(self) -> int:
        """Send lag plus every part on the path: completion − intended, by construction."""
        total = self.send_lag_ns
        for hop in self.hops:
            if hop.on_path:
                total += hop.transit_ns + hop.wait_ns + hop.work_ns + (hop.rest_ns or 0)
        return total


@dataclass(frozen=True, slots=True)
class _Stamps:
    """One hop's stamps with the missing ones filled from the stamp before."""

    arrived: int
    received: int
    forwarded: int
    gathered: int
    published: int

    @classmethod
    def of(cls, hop: Hop) -> _Stamps:
        forwarded = hop.forwarded_ns
        gathered = hop.gathered_ns or forwarded
        return cls(
            arrived=hop.arrived_ns or hop.received_ns,
            received=hop.received_ns,
            forwarded=forwarded,
            gathered=gathered,
            published=hop.published_ns or gathered,
        )


def _call_tree(
    hops: Sequence[Hop], spine: int, callers: Mapping[int, str]
) -> tuple[list[int], list[list[int]]]:
    """Each hop's parent (-1: the load generator), and the call-tree children of each."""
    parent = [-1] * len(hops)
    children: list[list[int]] = [[] for _ in hops]
    last_of: dict[str, int] = {}
    for i, hop in enumerate(hops):
        if 0 < i < spine:
            parent[i] = i - 1
        elif i >= spine:
            # depth first: the caller is the latest hop of the edge's source service
            parent[i] = last_of.get(callers.get(hop.edge, ""), spine - 1)
            children[parent[i]].append(i)
        last_of[hop.service] = i
    return parent, children


def decompose(
    env: Envelope,
    completion_ns: int,
    route_length: int,
    callers: Mapping[int, str],
    request_reply: frozenset[int],
) -> Breakdown | None:
    """The parts of one completion; None for a message without hops.

    route_length: the hops that carried the message to its recorder (the route's
    edges; 0 for a round trip back to the load generator, whose spine is its entry
    hop). callers: edge index -> the service that sends on it. request_reply: the
    indices of the request-reply edges."""
    hops = env.hops
    if not hops:
        return None
    spine = min(max(route_length, 1), len(hops))
    last = spine - 1
    parent, children = _call_tree(hops, spine, callers)
    stamps = [_Stamps.of(h) for h in hops]
    # when each call-tree hop's caller had its reply (else: when the caller gathered)
    returned = [
        h.returned_ns or (stamps[parent[i]].gathered if parent[i] >= 0 else completion_ns)
        for i, h in enumerate(hops)
    ]
    critical = [max(kids, key=returned.__getitem__) if kids else -1 for kids in children]
    on_path = [i < spine for i in range(len(hops))]
    node = last
    while critical[node] >= 0:
        node = critical[node]
        on_path[node] = True

    parts = []
    for i, hop in enumerate(hops):
        s = stamps[i]
        sent = env.sent_ns if i == 0 else _sent(stamps[parent[i]], hop.edge in request_reply)
        if i < last:  # on the spine: the path goes on to the next hop of the route
            goes_on_by_call = hops[i + 1].edge in request_reply
            rest = None if goes_on_by_call else s.published - s.forwarded
        else:
            resumed = returned[critical[i]] if critical[i] >= 0 else s.forwarded
            rest = (completion_ns if i == last else returned[i]) - resumed
        parts.append(
            HopParts(
                service=hop.service,
                transit_ns=s.arrived - sent,
                wait_ns=s.received - s.arrived,
                work_ns=s.forwarded - s.received,
                rest_ns=rest,
                on_path=on_path[i],
            )
        )
    return Breakdown(send_lag_ns=env.sent_ns - env.intended_ns, hops=tuple(parts))


def _sent(caller: _Stamps, by_call: bool) -> int:
    """When the caller sent: a call goes out when its work is done, a publish later."""
    return caller.forwarded if by_call else caller.published
