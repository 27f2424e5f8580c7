"""The one interface every mode implements.

A process (a service replica or a load worker) holds one transport per mode it
uses, made from the process's ``TransportContext`` (hopbench.transports.context).
Server side: ``serve(edge, handler)`` for each in-edge of that mode, before
``start``; the transport calls the handler with the time the message arrived (it had
the message, decoded, before any wait for a handler slot: the wait counts from there).
Client side: ``request`` for request-reply edges, ``publish`` for the asynchronous
ones, which returns once the message is acknowledged (or written, where nothing
acknowledges). ``send`` is the publish of a caller that does not wait: it returns once
the transport holds the message (the moment it counts as sent) and reports the outcome
later, once per message, to a callback (the load worker's path; the broker modes publish
through it too, so there is one path). Shutdown is two steps: ``stop_serving`` takes
no new messages, then, once the process has nothing in flight, ``close`` closes
connections. A
transport never records latency: completion belongs to the service runtime and
the load worker (one recorder for every mode).

What a transport receives goes through ``receive`` first (hopbench.transports.
admission): undecodable, foreign or impossible messages are counted as ``rejected``,
handed to ``dead_letter`` (the broker modes keep them in the run's dead-letter queue
or topic) and never reach a handler or a waiting caller.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ClassVar

from hopbench import clock
from hopbench.config.settings import Settings
from hopbench.config.topology import Edge
from hopbench.errors import FirstError, TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports import codec
from hopbench.transports.admission import Admission
from hopbench.transports.context import TransportContext
from hopbench.transports.replies import PendingReplies

log = logging.getLogger(__name__)

# a body -> its envelope, or TransportError (hopbench.transports.codec)
Decoder = Callable[[bytes], Envelope]
# (in-edge, message, arrived_ns) -> the reply for a request-reply edge, else None
Handler = Callable[[Edge, Envelope, int], Coroutine[Any, Any, Envelope | None]]
# called once per message handed to send: None once the transport is done with it
# (acknowledged, or written where nothing acknowledges), else why it failed, in words
Settled = Callable[[str | None], None]


class Transport(abc.ABC):
    mode: ClassVar[str]

    def __init__(self, context: TransportContext) -> None:
        self.context = context
        self.settings = context.settings
        self.handlers: dict[int, tuple[Edge, Handler]] = {}
        # broker request-reply: calls awaiting a reply (set by the modes that have one)
        self.replies: PendingReplies | None = None
        # failures no handler saw (a reply that could not be sent back), and the first
        self.errors = 0
        self.first_error: FirstError | None = None
        # per out-edge: the messages this process wrote, and their bytes (codec.WireCounts)
        self.wire = codec.WireCounts()
        # what this transport received and rejected (counted there)
        self.admission = Admission(context.run_id, context.load)
        self.connections_opened = 0  # by this process's clients (HTTP and gRPC edges)
        self._decoders: dict[int, Decoder] = {}  # per edge: made once, used per message
        self._sending: set[asyncio.Task[None]] = set()  # send's default: a task each
        # in-edges whose handler never waits (serve's at_once): run in the receiver's turn
        self.at_once: set[int] = set()

    async def receive(
        self, body: bytes | None, where: str, decode: Decoder | None = None
    ) -> Envelope | None:
        """The envelope in body, or None when it is rejected (counted, dead-lettered).
        decode: how the body is encoded (codec.decode's; default protobuf)."""
        found = self.admit(body, where, decode)
        if isinstance(found, Envelope):
            return found
        await self.reject(body, where, found)
        return None

    def admit(
        self, body: bytes | None, where: str, decode: Decoder | None = None
    ) -> Envelope | str:
        """receive's screening alone, without a coroutine: the envelope, or why it was
        rejected (counted; the caller then awaits reject)."""
        return self.admission.screen(body, clock.now_ns(), where, decode)

    async def reject(self, body: bytes | None, where: str, found: str) -> None:
        """Dead-letter a message admit rejected."""
        try:
            await self.dead_letter(body or b"", where, found)
        except Exception as exc:  # a garbage message must never stop a consumer
            log.warning("%s: could not dead-letter a rejected message: %r", where, exc)

    async def dead_letter(self, body: bytes, where: str, why: str) -> None:  # noqa: B027
        """Keep a rejected message where a user can read it (modes with a broker)."""

    @property
    def rejected(self) -> int:
        return self.admission.rejected

    @property
    def tls_handshakes(self) -> tuple[int, int]:
        """(TLS handshakes this process's clients finished, of which resumed), where
        the mode can see them."""
        return (0, 0)

    def failed(self, message: str) -> None:
        """Count a failure outside any handler; log the first (the rest only count)."""
        self.errors += 1
        if self.first_error is None:
            self.first_error = FirstError(message, clock.now_ns())
            log.warning("%s (the first error of this transport; later ones are counted)", message)

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their caller gave up (broker request-reply)."""
        return self.replies.late if self.replies is not None else 0

    @property
    def pending_replies(self) -> int:
        return len(self.replies) if self.replies is not None else 0

    def publishes(self) -> bool:
        """Does this process send on any edge of this transport's mode?"""
        outs = self.context.topology.out_edges(self.context.service)
        return any(e.mode == self.mode for e in outs)

    def settings_for(self, edge: Edge) -> Settings:
        """The run's settings with the edge's own on top."""
        return self.context.settings_for(edge)

    def pack(self, edge: Edge, env: Envelope, *, reply: bool = False) -> bytes:
        """The envelope as this edge carries it, encoded and compressed here (the modes
        whose client does not compress), and counted as written."""
        settings = self.settings_for(edge)
        encoded = codec.encode(env, settings.encoding)
        body = codec.compress(encoded, settings.compression)
        self.wire.sent(edge.name, len(encoded), len(body), reply=reply)
        return body

    def unpack(self, edge: Edge, body: bytes) -> Envelope:
        """What pack made, back into the envelope (TransportError if it is not one)."""
        settings = self.settings_for(edge)
        return codec.decode(codec.decompress(body, settings.compression), settings.encoding)

    def decoder(self, edge: Edge) -> Decoder:
        """How receive decodes this edge's bodies (unpack's, with the edge's settings
        read once)."""
        found = self._decoders.get(edge.index)
        if found is None:
            settings = self.settings_for(edge)
            compression, encoding = settings.compression, settings.encoding

            def decode(body: bytes) -> Envelope:
                return codec.decode(codec.decompress(body, compression), encoding)

            found = self._decoders[edge.index] = decode
        return found

    def serve(self, edge: Edge, handler: Handler, *, at_once: bool = False) -> None:
        """Receive the messages of one in-edge (call before start). at_once: the handler
        never waits (no I/O, nothing to send): a mode may run it in its receiver's turn,
        not in a task of its own (hopbench.transports.eager)."""
        self.handlers[edge.index] = (edge, handler)
        if at_once:
            self.at_once.add(edge.index)

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect, and start serving the registered in-edges."""

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        raise TransportError(f"{self.mode} does not carry request-reply ({edge.name})")

    async def publish(self, edge: Edge, env: Envelope) -> None:
        raise TransportError(f"{self.mode} does not carry {edge.pattern} ({edge.name})")

    async def send(self, edge: Edge, env: Envelope, settled: Settled) -> None:
        """Hand env over for an asynchronous edge; return once the transport holds it,
        and call settled once with the outcome (maybe before returning). The caller
        must not change env afterwards. Default: publish in a task of its own."""
        task = asyncio.create_task(self._publish_settled(edge, env, settled))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish_settled(self, edge: Edge, env: Envelope, settled: Settled) -> None:
        try:
            await self.publish(edge, env)
        except TransportError as exc:
            settled(str(exc))
        except Exception as exc:  # a transport bug: still a failure, never a silent loss
            log.exception("unexpected error publishing on %s", edge.name)
            settled(f"{edge.name}: {type(exc).__name__}: {exc}")
        else:
            settled(None)

    async def publish_by_send(self, edge: Edge, env: Envelope) -> None:
        """publish for a mode whose primitive is send: hand over, await the outcome."""
        outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def settled(why: str | None) -> None:
            if not outcome.done():  # this caller may have been cancelled meanwhile
                outcome.set_result(why)

        await self.send(edge, env, settled)
        why = await outcome
        if why is not None:
            raise TransportError(why)

    async def stop_serving(self) -> None:  # noqa: B027 - optional hook, most modes need it
        """Take no new messages from the in-edges (in-flight ones may finish)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections; called once the process has no message in flight."""


def connection_counts(transports: Iterable[Transport]) -> dict[str, int]:
    """A process's connection counts, as its row in the results carries them."""
    opened = handshakes = resumed = 0
    for transport in transports:
        opened += transport.connections_opened
        finished, reused = transport.tls_handshakes
        handshakes += finished
        resumed += reused
    return {"connections_opened": opened, "tls_handshakes": handshakes, "tls_resumed": resumed}


def channel_of(edge: Edge) -> str:
    """Edges that share a channel get one publish between them.

    Publish-subscribe edges of one source share its channel (published once, read
    by every subscriber); every other edge is its own channel.
    """
    if edge.pattern == "publish-subscribe":
        return f"{edge.source}.{edge.mode}"
    return edge.name
