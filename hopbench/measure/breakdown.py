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

A stamp that was not taken (0) is taken to equal the one before it: the sum still
holds, and the time of the missing step counts in a neighbouring part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hopbench.proto.hopbench_pb2 import Envelope, Hop

PARTS = ("transit", "wait", "work", "rest")


class HopParts(NamedTuple):
    """One hop of one completion, in ns (negative only across hosts' clock error).

    A named tuple, not a dataclass: one is made per hop of every completion, and a
    frozen dataclass costs about three times as much to build."""

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


class _Stamps(NamedTuple):
    """One hop's stamps, read once (each read of a protobuf field costs), the missing
    ones filled from the stamp before."""

    service: str
    edge: int
    arrived: int
    received: int
    forwarded: int
    gathered: int
    published: int
    returned: int  # 0: not stamped

    @classmethod
    def of(cls, hop: Hop) -> _Stamps:
        received, forwarded = hop.received_ns, hop.forwarded_ns
        gathered = hop.gathered_ns or forwarded
        return cls(hop.service, hop.edge, hop.arrived_ns or received, received, forwarded,
                   gathered, hop.published_ns or gathered, hop.returned_ns)  # fmt: skip


def _call_tree(
    hops: Sequence[_Stamps], spine: int, callers: Mapping[int, str]
) -> tuple[list[int], list[list[int]]]:
    """Each hop's parent (-1: the load generator), and the call-tree children of each."""
    parent = [i - 1 for i in range(len(hops))]  # along the spine
    children: list[list[int]] = [[] for _ in hops]
    if len(hops) > spine:
        last_of: dict[str, int] = {}
        for i, hop in enumerate(hops):
            if i >= spine:
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
    hops = env.hops[:]  # a list of the hops: one read of the repeated field, the cheapest
    if not hops:
        return None
    sent_ns = env.sent_ns
    spine = min(max(route_length, 1), len(hops))
    if spine == len(hops):  # the usual case, and the cheap one
        parts = _spine_parts(sent_ns, hops, completion_ns, request_reply)
    else:
        stamps = [_Stamps.of(h) for h in hops]
        parts = _tree_parts(env, stamps, spine, completion_ns, callers, request_reply)
    return Breakdown(send_lag_ns=sent_ns - env.intended_ns, hops=tuple(parts))


def _spine_parts(
    sent_ns: int, hops: Sequence[Hop], completion_ns: int, request_reply: frozenset[int]
) -> list[HopParts]:
    """Every hop on the route, none beyond it: each on the path, no call tree to
    follow. The same parts as _tree_parts (tests/test_breakdown.py holds that), read
    straight from the hops: only the stamps these parts use, each once."""
    parts = []
    last = len(hops) - 1
    for i, hop in enumerate(hops):
        received, forwarded = hop.received_ns, hop.forwarded_ns
        arrived = hop.arrived_ns or received
        rest: int | None
        if i == last:
            rest = completion_ns - forwarded
        elif hops[i + 1].edge in request_reply:  # the next hop is called: at forwarded
            rest = None
        else:  # published to: at its publish, else when gathered, else forwarded
            rest = (hop.published_ns or hop.gathered_ns or forwarded) - forwarded
        parts.append(HopParts(hop.service, arrived - sent_ns, received - arrived,
                              forwarded - received, rest, True))  # fmt: skip
        sent_ns = forwarded + (rest or 0)  # when the next hop was sent (unused after the last)
    return parts


def _tree_parts(
    env: Envelope,
    hops: Sequence[_Stamps],
    spine: int,
    completion_ns: int,
    callers: Mapping[int, str],
    request_reply: frozenset[int],
) -> list[HopParts]:
    """The route's hops, then the call tree below its last one, critical path followed."""
    last = spine - 1
    parent, children = _call_tree(hops, spine, callers)
    # when each call-tree hop's caller had its reply (else: when the caller gathered)
    returned = [
        h.returned or (hops[parent[i]].gathered if parent[i] >= 0 else completion_ns)
        for i, h in enumerate(hops)
    ]
    critical = [max(kids, key=returned.__getitem__) if kids else -1 for kids in children]
    on_path = [i < spine for i in range(len(hops))]
    node = last
    while critical[node] >= 0:
        node = critical[node]
        on_path[node] = True

    parts = []
    for i, s in enumerate(hops):
        sent = env.sent_ns if i == 0 else _sent(hops[parent[i]], s.edge in request_reply)
        if i < last:  # on the spine: the path goes on to the next hop of the route
            goes_on_by_call = hops[i + 1].edge in request_reply
            rest = None if goes_on_by_call else s.published - s.forwarded
        else:
            resumed = returned[critical[i]] if critical[i] >= 0 else s.forwarded
            rest = (completion_ns if i == last else returned[i]) - resumed
        parts.append(HopParts(s.service, s.arrived - sent, s.received - s.arrived,
                              s.forwarded - s.received, rest, on_path[i]))  # fmt: skip
    return parts


def _sent(caller: _Stamps, by_call: bool) -> int:
    """When the caller sent: a call goes out when its work is done, a publish later."""
    return caller.forwarded if by_call else caller.published
