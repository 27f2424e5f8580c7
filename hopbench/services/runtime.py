"""The generic service: receive, work, forward along the out-edges, reply or record.

Every service in every topology is this class; its behaviour comes from the
topology (work per message, out-edges, handlers at once) and its transports from the
edges' modes. It stamps each hop as the message goes (hopbench.proto Hop): a handler
started, work done, calls gathered, each publish, the reply; and, as a caller, when
each reply came back. The transport stamps the arrival.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping

from hopbench import clock
from hopbench.config.topology import Edge, Topology
from hopbench.errors import FirstError, TransportError
from hopbench.measure.recorder import Recorder
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.services.cache import ServiceCache
from hopbench.services.db import DbClient
from hopbench.services.limits import WorkLimits
from hopbench.services.work import do_work
from hopbench.transports.base import Transport, channel_of, connection_counts
from hopbench.transports.codec import Payloads

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(
        self,
        topology: Topology,
        service: str,
        replica: int,
        run_id: str,
        transports: Mapping[str, Transport],
        redis_url: str | None = None,
        db: DbClient | None = None,
        payload_content: str = "random",
    ) -> None:
        self.spec = topology.services[service]
        cache = self.spec.cache
        self.cache = (
            None if cache is None else ServiceCache.of(cache, run_id, service, replica, redis_url)
        )
        self.db = db  # one query per message (work.db)
        self.replica = replica
        self.run_id = run_id
        self.transports = transports
        self.recorder = Recorder(topology.callers, request_reply=topology.request_reply)
        self._errors = 0
        self._first_error: FirstError | None = None
        self.handled = 0
        self.in_edges = topology.in_edges(service)
        out_edges = topology.out_edges(service)
        self.sync_out = tuple(e for e in out_edges if e.is_sync)
        # one publish per channel: pub-sub edges of one source share it
        channels: dict[str, Edge] = {}
        for edge in out_edges:
            if not edge.is_sync:
                channels.setdefault(channel_of(edge), edge)
        self.publish_out = tuple(channels.values())
        self.records_completion = topology.records_completion(service)
        self.reply_payloads = Payloads(payload_content, self.spec.reply_bytes)
        self._in_flight = 0
        # messages in the handlers integrated over time (message-ns), up to _changed_ns,
        # and that integral and its time at the last sample: the mean in flight between
        self._held_ns = 0
        self._changed_ns = clock.now_ns()
        self._sampled = (self._changed_ns, 0)
        # per out-edge: requests and publishes sent and not yet answered (sampled)
        self.calls: dict[str, int] = dict.fromkeys((e.name for e in out_edges), 0)
        self._idle = asyncio.Event()
        self._idle.set()
        # a free handler: messages beyond the service's concurrency wait for one
        limit = self.spec.concurrency
        self._handlers = asyncio.Semaphore(limit) if limit is not None else None
        self.limits = WorkLimits(self.spec, replica)  # CPU on the loop or a pool; key locks
        spec = self.spec
        # work to call: a cache lookup, a query, a delay, CPU, a lock around it
        self._works = bool(self.cache or db or spec.io_ms > 0 or spec.cpu_us or spec.lock)
        # handling a message may wait: for its work's I/O, a pool's thread, a free
        # handler, or what it sends on. If not, the transports may run it without a task
        self._waits = bool(
            self.cache or db or spec.io_ms > 0 or spec.cpu_threads or spec.lock
            or limit is not None or out_edges
        )  # fmt: skip

    async def start(self) -> None:
        if self.db is not None:  # before serving: the first message may query
            await self.db.start()
        for edge in self.in_edges:
            at_once = not (self._waits or edge.is_sync)  # a reply is sent: that waits
            self.transports[edge.mode].serve(edge, self.handle, at_once=at_once)
        for transport in self._distinct_transports():
            await transport.start()

    async def close(self, drain_timeout_s: float = 10.0) -> None:
        """Stop receiving, let in-flight messages finish, close the transports."""
        for transport in self._distinct_transports():
            await transport.stop_serving()
        try:
            await asyncio.wait_for(self._idle.wait(), drain_timeout_s)
        except TimeoutError:
            log.warning(
                "%d messages still in flight after %.0f s", self._in_flight, drain_timeout_s
            )
        for transport in self._distinct_transports():
            await transport.close()
        if self.cache is not None:
            await self.cache.close()
        if self.db is not None:
            await self.db.close()
        self.limits.close()

    @property
    def in_flight(self) -> int:
        """Messages inside this replica's handlers right now."""
        return self._in_flight

    def mean_in_flight(self) -> float:
        """Messages inside the handlers on average since the last call (Little's law:
        throughput × time in the handler): unlike a glance at one instant, a consumer
        held at its prefetch reads as at its prefetch."""
        now = clock.now_ns()
        held = self._held_ns + self._in_flight * (now - self._changed_ns)
        before_ns, before_held = self._sampled
        self._sampled = (now, held)
        return (held - before_held) / (now - before_ns) if now > before_ns else 0.0

    def _count(self, change: int, now_ns: int) -> None:
        self._held_ns += self._in_flight * (now_ns - self._changed_ns)
        self._changed_ns = now_ns
        self._in_flight += change

    def begin(self, start_ns: int, origin_ns: int) -> None:
        """The load starts at start_ns, its measured window at origin_ns: the recorder's
        series counts from origin_ns, and what arrives is held to the schedule."""
        self.recorder.start(origin_ns)
        for transport in self._distinct_transports():
            transport.admission.open(start_ns)

    def connection_counts(self) -> dict[str, int]:
        return connection_counts(self._distinct_transports())

    def wire(self) -> dict[str, dict[str, int]]:
        """Per edge: the messages and bytes this replica's transports wrote."""
        counts: dict[str, dict[str, int]] = {}
        for transport in self._distinct_transports():
            counts.update(transport.wire.to_json())  # an edge has one mode: no overlap
        return counts

    @property
    def late_replies(self) -> int:
        return sum(t.late_replies for t in self._distinct_transports())

    @property
    def rejected(self) -> int:
        """Messages its transports rejected: undecodable, foreign or impossible."""
        return sum(t.rejected for t in self._distinct_transports())

    @property
    def first_rejected(self) -> str | None:
        return next(
            (t.admission.first for t in self._distinct_transports() if t.admission.first), None
        )

    @property
    def errors(self) -> int:
        """Messages this replica failed to handle, and replies its transports could not send."""
        return self._errors + sum(t.errors for t in self._distinct_transports())

    @property
    def first_error(self) -> FirstError | None:
        """The earliest error of this replica or its transports: the likeliest cause."""
        seen = [self._first_error, *(t.first_error for t in self._distinct_transports())]
        return min((e for e in seen if e is not None), key=lambda e: e.t_ns, default=None)

    def _failed(self, edge: Edge, exc: TransportError) -> None:
        """Count an error; log the first in words (the process log then says why)."""
        self._errors += 1
        if self._first_error is None:
            self._first_error = FirstError(str(exc), clock.now_ns())
            log.warning("%s: %s (the first error here; later ones are counted)", edge.name, exc)
        else:
            log.debug("%s: %s", edge.name, exc)

    def _distinct_transports(self) -> list[Transport]:
        return list(dict.fromkeys(self.transports.values()))

    async def handle(self, edge: Edge, env: Envelope, arrived_ns: int) -> Envelope | None:
        """arrived_ns: when the transport had the message, before any wait for a handler."""
        self._count(1, clock.now_ns())
        self._idle.clear()
        try:
            if self._handlers is None:
                return await self._handle(edge, env, arrived_ns)
            async with self._handlers:
                return await self._handle(edge, env, arrived_ns)
        except TransportError as exc:
            self._failed(edge, exc)
            if edge.is_sync:
                raise
            return None
        finally:
            self._count(-1, clock.now_ns())
            if self._in_flight == 0:
                self._idle.set()

    async def _handle(self, edge: Edge, env: Envelope, arrived_ns: int) -> Envelope | None:
        hops = env.hops  # each read of a repeated field costs: read once
        hop = hops.add(
            edge=edge.index,
            service=self.spec.name,
            replica=self.replica,
            arrived_ns=arrived_ns,
            received_ns=clock.now_ns(),
        )
        if self._works:
            await self.limits.run(functools.partial(self._work, not env.warmup))
        hop.forwarded_ns = clock.now_ns()
        replies: list[Envelope] = []
        if self.sync_out:
            replies = await self._call(env)
            hop.gathered_ns = clock.now_ns()
        for out in self.publish_out:
            hop.published_ns = clock.now_ns()  # each copy carries its own publish
            self.calls[out.name] += 1
            try:
                await self.transports[out.mode].publish(out, env)
            finally:
                self.calls[out.name] -= 1
        self.handled += 1
        if not edge.is_sync:
            if self.records_completion:
                known = len(hops)
                # the route: the edges that brought the message here (usually just one)
                route = (edge.index,) if known == 1 else tuple(h.edge for h in hops)
                for sub in replies:  # the callees' hops too, for the time's parts
                    hops.extend(sub.hops[known:])
                self.recorder.complete(route, env, clock.now_ns())
            return None
        return self._reply(env, replies)

    async def _work(self, counted: bool) -> None:
        """The service's work: its cache lookup, its CPU and delay, then its query."""
        if self.cache is not None:
            await self.cache.lookup(counted=counted)
        await do_work(self.spec.cpu_us, self.spec.io_ms, self.limits.burn)
        if self.db is not None:
            await self.db.query()

    async def _call(self, env: Envelope) -> list[Envelope]:
        """Scatter to every request-reply edge at once; gather per the service's policy:
        all replies, the first, or a quorum. Calls still out when the policy is met are
        cancelled (a broker reply that comes later is counted as late)."""
        spec = self.spec
        if len(self.sync_out) == 1 and spec.gather_timeout_s is None:
            edge = self.sync_out[0]
            self.calls[edge.name] += 1
            try:
                return [_returned(await self.transports[edge.mode].request(edge, env), env)]
            finally:
                self.calls[edge.name] -= 1
        needed = spec.gather_needed or len(self.sync_out)
        calls = [asyncio.ensure_future(self._request(e, env)) for e in self.sync_out]
        replies: list[Envelope] = []
        failed = 0
        try:
            for next_done in asyncio.as_completed(calls):
                try:
                    replies.append(await next_done)
                except TransportError:
                    failed += 1
                    if len(calls) - failed < needed:
                        raise TransportError(
                            f"{spec.name}: {failed} of {len(calls)} calls failed; "
                            f"policy {spec.gather_policy} needs {needed}"
                        ) from None
                if len(replies) >= needed:
                    return replies
        finally:
            for call in calls:
                call.cancel()
        raise AssertionError("as_completed ended early")  # pragma: no cover

    async def _request(self, edge: Edge, env: Envelope) -> Envelope:
        call = self.transports[edge.mode].request(edge, env)
        timeout_s = self.spec.gather_timeout_s
        self.calls[edge.name] += 1
        try:
            if timeout_s is None:
                return _returned(await call, env)
            try:
                return _returned(await asyncio.wait_for(call, timeout_s), env)
            except TimeoutError:
                raise TransportError(
                    f"{edge.name}: no reply within {timeout_s * 1000:g} ms"
                ) from None
        finally:
            self.calls[edge.name] -= 1

    def _reply(self, env: Envelope, replies: list[Envelope]) -> Envelope:
        known = len(env.hops)
        reply = Envelope(
            id=env.id,
            flow=env.flow,
            worker=env.worker,
            seq=env.seq,
            intended_ns=env.intended_ns,
            sent_ns=env.sent_ns,
            trace_id=env.trace_id,
            warmup=env.warmup,
            run_id=env.run_id,
            payload=self.reply_payloads.next(),
        )
        reply.hops.extend(env.hops)
        for sub in replies:
            reply.hops.extend(sub.hops[known:])
        reply.hops[known - 1].replied_ns = clock.now_ns()
        return reply


def _returned(reply: Envelope, request: Envelope) -> Envelope:
    """Stamp, on the callee's hop (the first the reply adds), when its reply came back."""
    known = len(request.hops)
    if len(reply.hops) > known:
        reply.hops[known].returned_ns = clock.now_ns()
    return reply
