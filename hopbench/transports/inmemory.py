"""An in-process transport for unit tests of the logic above the transports.

It keeps each mode's delivery semantics — request-reply waits for the handler,
fire-and-forget goes to one replica, publish-subscribe to one replica of every
subscriber — and copies every message through its edge's encoding and compression,
as a wire would, counting the bytes.
All processes of a run must live in one event loop; they meet in ``HUBS``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from hopbench import clock
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Handler, Transport, channel_of


@dataclass
class _Hub:
    # edge index -> the replicas' handlers, and a round-robin counter
    handlers: dict[int, list[tuple[Edge, Handler]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    turns: dict[int, itertools.count[int]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def pick(self, edge: Edge) -> Handler:
        replicas = self.handlers.get(edge.index)
        if not replicas:
            raise TransportError(f"nobody serves {edge.name}")
        turn = next(self.turns.setdefault(edge.index, itertools.count()))
        return replicas[turn % len(replicas)][1]


HUBS: dict[str, _Hub] = defaultdict(_Hub)


class InMemoryTransport(Transport):
    mode = "inmemory"

    async def start(self) -> None:
        hub = HUBS[self.context.run_id]
        for edge, handler in self.handlers.values():
            hub.handlers[edge.index].append((edge, handler))

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        handler = HUBS[self.context.run_id].pick(edge)
        reply = await handler(edge, self.unpack(edge, self.pack(edge, env)), clock.now_ns())
        if reply is None:
            raise TransportError(f"{edge.name} gave no reply")
        return self.unpack(edge, self.pack(edge, reply, reply=True))

    async def publish(self, edge: Edge, env: Envelope) -> None:
        hub = HUBS[self.context.run_id]
        channel = channel_of(edge)
        body = self.pack(edge, env)  # one publish per channel, as a broker's
        for target in self.context.topology.edges:
            if target.source == edge.source and channel_of(target) == channel:
                task = asyncio.create_task(self._deliver(hub, target, self.unpack(edge, body)))
                hub.tasks.add(task)
                task.add_done_callback(hub.tasks.discard)

    @staticmethod
    async def _deliver(hub: _Hub, edge: Edge, env: Envelope) -> None:
        await hub.pick(edge)(edge, env, clock.now_ns())

    async def stop_serving(self) -> None:
        hub = HUBS[self.context.run_id]
        for edge, handler in self.handlers.values():
            hub.handlers[edge.index].remove((edge, handler))

    async def close(self) -> None:
        pass
