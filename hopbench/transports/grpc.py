"""gRPC: request-reply as the unary ``Relay.Call`` of hopbench.proto (grpc.aio), and
fire-and-forget as ``Relay.Cast``, acknowledged on arrival and handled afterwards.

The in-edge travels as the ``hb-edge`` metadata key, so one server serves every
gRPC in-edge of a replica. Callers keep ``grpc_channels`` channels per target
replica and go round-robin over them.

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

from hopbench import clock
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto import hopbench_pb2_grpc
from hopbench.proto.hopbench_pb2 import Ack, Envelope
from hopbench.transports.base import Handler, Transport
from hopbench.transports.context import TransportContext

EDGE_KEY = "hb-edge"
COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip}


class _Relay(hopbench_pb2_grpc.RelayServicer):  # type: ignore[misc]
    def __init__(self, transport: GrpcTransport) -> None:
        self.transport = transport
        self.handlers = transport.handlers
        self.background: set[asyncio.Task[Envelope | None]] = set()

    async def _entry(self, context: grpc.aio.ServicerContext) -> tuple[Edge, Handler]:
        index = -1
        for key, value in context.invocation_metadata() or ():
            if key == EDGE_KEY:
                index = int(value)
        entry = self.handlers.get(index)
        if entry is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no edge {index} here")
            raise AssertionError("abort raises")
        return entry

    async def Cast(self, request: Envelope, context: grpc.aio.ServicerContext) -> Ack:
        """Fire-and-forget: acknowledge on arrival, do the work afterwards."""
        arrived_ns = clock.now_ns()
        edge, handler = await self._entry(context)
        task = asyncio.create_task(handler(edge, request, arrived_ns))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return Ack()

    async def Call(self, request: Envelope, context: grpc.aio.ServicerContext) -> Envelope:
        arrived_ns = clock.now_ns()
        edge, handler = await self._entry(context)
        try:
            reply = await handler(edge, request, arrived_ns)
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

    async def start(self) -> None:
        if not self.handlers:
            return
        host, port = self.context.bind_address("grpc")
        address = f"{host}:{port}"
        self._server = grpc.aio.server()
        hopbench_pb2_grpc.add_RelayServicer_to_server(_Relay(self), self._server)
        if self._server.add_insecure_port(address) == 0:
            raise TransportError(f"gRPC server could not bind {address}")
        await self._server.start()

    def _next_stub(self, edge: Edge) -> hopbench_pb2_grpc.RelayStub:
        stubs = self._stubs.get(edge.index)
        if stubs is None:
            made = []
            for address in self.context.endpoints["grpc"][edge.target]:
                for _ in range(self.settings_for(edge).grpc_channels):
                    channel = grpc.aio.insecure_channel(address)
                    self._channels.append(channel)
                    made.append(hopbench_pb2_grpc.RelayStub(channel))
            stubs = self._stubs[edge.index] = itertools.cycle(made)
        return next(stubs)

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        reply: Envelope = await self._call(edge, "Call", env)
        return reply

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._call(edge, "Cast", env)

    def count(self, edge: Edge, env: Envelope, *, reply: bool = False) -> None:
        """The serialized size; the size after compression only when there is none."""
        size = env.ByteSize()
        compressed = self.settings_for(edge).compression != "none"
        self.wire.sent(edge.name, size, None if compressed else size, reply=reply)

    async def _call(self, edge: Edge, method: str, env: Envelope) -> Any:
        stub = self._next_stub(edge)
        settings = self.settings_for(edge)
        self.count(edge, env)
        try:
            return await getattr(stub, method)(
                env,
                timeout=settings.request_timeout_s,
                metadata=((EDGE_KEY, str(edge.index)),),
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
