"""gRPC: request-reply as the unary ``Relay.Call`` of hopbench.proto (grpc.aio), and
fire-and-forget as ``Relay.Cast``, acknowledged on arrival and handled afterwards.

The in-edge travels as the ``hb-edge`` metadata key, so one server serves every
gRPC in-edge of a replica. Callers keep ``grpc_channels`` channels per target
replica and go round-robin over them; each channel is a connection of its own
(a local subchannel pool: gRPC would otherwise share one connection among the
channels to one address). With ``keepalive`` off, every call opens a new channel,
and so a new connection, and closes it after the reply. With ``tls``, the channels
are secure on the run's own CA (hopbench.transports.tls), checked against the name
the run's certificate carries (``SERVER_NAME``: gRPC's session cache is keyed by
it, and gRPC sends none to an IP address), and, unless
``tls_resumption`` is off, share one TLS session cache (``grpc.ssl_session_cache``),
so a new connection resumes an earlier session. A request that is not
an envelope of this run is rejected (counted) and answered INVALID_ARGUMENT with
why: there is no broker to keep it, so the sender is told.

The envelope is protobuf, gRPC's own format (an edge with ``encoding: json`` is refused
at validation); ``compression: gzip`` is grpcio's message compression, both ways. Bytes
are counted as the message's serialized size; grpcio compresses inside its core and
does not tell the compressed size, so a compressing edge's wire bytes are not known.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import grpc
from grpc.experimental.session_cache import ssl_session_cache_lru

from hopbench import clock
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto import hopbench_pb2_grpc
from hopbench.proto.hopbench_pb2 import Ack, Envelope
from hopbench.transports.base import Handler, Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.tls import (
    SERVER_NAME,
    grpc_channel_credentials,
    grpc_server_credentials,
)

EDGE_KEY = "hb-edge"
COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip}
SERVICE = "hopbench.Relay"
SESSION_CACHE_SIZE = 64  # TLS sessions kept per process (one per target is enough)


class _Relay:
    """The Relay service over raw request bytes: each request is screened
    (hopbench.transports.admission) before it is decoded for a handler."""

    def __init__(self, transport: GrpcTransport) -> None:
        self.transport = transport
        self.handlers = transport.handlers
        self.background: set[asyncio.Task[Envelope | None]] = set()

    def add_to(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Call": grpc.unary_unary_rpc_method_handler(
                self.Call, response_serializer=Envelope.SerializeToString
            ),
            "Cast": grpc.unary_unary_rpc_method_handler(
                self.Cast, response_serializer=Ack.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    async def _entry(
        self, body: bytes, context: grpc.aio.ServicerContext
    ) -> tuple[Edge, Handler, Envelope]:
        index = -1
        for key, value in context.invocation_metadata() or ():
            if key == EDGE_KEY:
                index = int(value) if str(value).isdigit() else -1
        entry = self.handlers.get(index)
        if entry is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no edge {index} here")
            raise AssertionError("abort raises")
        edge, handler = entry
        env = await self.transport.receive(body, edge.name)
        if env is None:
            why = f"rejected: {self.transport.admission.last}"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)
            raise AssertionError("abort raises")
        return edge, handler, env

    async def Cast(self, request: bytes, context: grpc.aio.ServicerContext) -> Ack:
        """Fire-and-forget: acknowledge on arrival, do the work afterwards."""
        arrived_ns = clock.now_ns()
        edge, handler, env = await self._entry(request, context)
        task = asyncio.create_task(handler(edge, env, arrived_ns))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return Ack()

    async def Call(self, request: bytes, context: grpc.aio.ServicerContext) -> Envelope:
        arrived_ns = clock.now_ns()
        edge, handler, env = await self._entry(request, context)
        try:
            reply = await handler(edge, env, arrived_ns)
        except TransportError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        reply = reply if reply is not None else Envelope()
        self.transport.count(edge, reply, reply=True)
        compression = self.transport.settings_for(edge).compression
        if compression != "none":
            context.set_compression(COMPRESSION[compression])
        return reply


class GrpcTransport(Transport):
    mode = "grpc"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self._server: grpc.aio.Server | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: dict[int, itertools.cycle[hopbench_pb2_grpc.RelayStub]] = {}
        self._addresses: dict[int, itertools.cycle[str]] = {}
        self._session_cache: Any = None  # made on first use
        # built once per edge: grpc converts a tuple into Metadata on every call otherwise
        self._metadata: dict[int, grpc.aio.Metadata] = {}

    async def start(self) -> None:
        if not self.handlers:
            return
        host, port = self.context.bind_address("grpc")
        address = f"{host}:{port}"
        self._server = grpc.aio.server()
        _Relay(self).add_to(self._server)
        secure = [e for e, _ in self.handlers.values() if self.settings_for(e).tls]
        if secure:  # the topology's checks make every in-edge agree
            credentials = grpc_server_credentials(self.context.tls_material(secure[0]))
            bound = self._server.add_secure_port(address, credentials)
        else:
            bound = self._server.add_insecure_port(address)
        if bound == 0:
            raise TransportError(f"gRPC server could not bind {address}")
        await self._server.start()

    def _channel(self, edge: Edge, address: str) -> grpc.aio.Channel:
        """A new channel, and with it a new connection, to one replica."""
        settings = self.settings_for(edge)
        options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
        self.connections_opened += 1
        if not settings.tls:
            return grpc.aio.insecure_channel(address, options=options)
        options.append(("grpc.ssl_target_name_override", SERVER_NAME))
        if settings.tls_resumption:
            if self._session_cache is None:
                self._session_cache = ssl_session_cache_lru(SESSION_CACHE_SIZE)
            options.append(("grpc.ssl_session_cache", self._session_cache))
        credentials = grpc_channel_credentials(self.context.tls_material(edge))
        return grpc.aio.secure_channel(address, credentials, options=options)

    def _next_stub(self, edge: Edge) -> hopbench_pb2_grpc.RelayStub:
        stubs = self._stubs.get(edge.index)
        if stubs is None:
            made = []
            for address in self.context.endpoints["grpc"][edge.target]:
                for _ in range(self.settings_for(edge).grpc_channels):
                    channel = self._channel(edge, address)
                    self._channels.append(channel)
                    made.append(hopbench_pb2_grpc.RelayStub(channel))
            stubs = self._stubs[edge.index] = itertools.cycle(made)
        return next(stubs)

    def _next_address(self, edge: Edge) -> str:
        addresses = self._addresses.get(edge.index)
        if addresses is None:
            replicas = self.context.endpoints["grpc"][edge.target]
            addresses = self._addresses[edge.index] = itertools.cycle(replicas)
        return next(addresses)

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        reply: Envelope = await self._call(edge, "Call", env)
        why = self.admission.check(reply, clock.now_ns())
        if why is not None:
            self.admission.reject(f"replies ({edge.name})", why)
            raise TransportError(f"{edge.name}: the reply was rejected: {why}")
        return reply

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._call(edge, "Cast", env)

    def count(self, edge: Edge, env: Envelope, *, reply: bool = False) -> None:
        """The serialized size; the size after compression only when there is none."""
        size = env.ByteSize()
        compressed = self.settings_for(edge).compression != "none"
        self.wire.sent(edge.name, size, None if compressed else size, reply=reply)

    async def _call(self, edge: Edge, method: str, env: Envelope) -> Any:
        settings = self.settings_for(edge)
        self.count(edge, env)
        if settings.keepalive:
            return await self._invoke(edge, self._next_stub(edge), method, env)
        channel = self._channel(edge, self._next_address(edge))
        try:
            return await self._invoke(edge, hopbench_pb2_grpc.RelayStub(channel), method, env)
        finally:
            await channel.close()

    async def _invoke(
        self, edge: Edge, stub: hopbench_pb2_grpc.RelayStub, method: str, env: Envelope
    ) -> Any:
        settings = self.settings_for(edge)
        metadata = self._metadata.get(edge.index)
        if metadata is None:
            metadata = self._metadata[edge.index] = grpc.aio.Metadata((EDGE_KEY, str(edge.index)))
        try:
            return await getattr(stub, method)(
                env,
                timeout=settings.request_timeout_s,
                metadata=metadata,
                compression=COMPRESSION[settings.compression],
            )
        except grpc.aio.AioRpcError as exc:
            raise TransportError(f"{edge.name}: gRPC {exc.code().name}: {exc.details()}") from exc

    async def stop_serving(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=5)
            self._server = None

    async def close(self) -> None:
        await self.stop_serving()
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
