"""gRPC: request-reply as the unary ``Relay.Call`` of hopbench.proto (grpc.aio), and
fire-and-forget as ``Relay.Cast``, acknowledged on arrival and handled afterwards.

The in-edge travels as the ``hb-edge`` metadata key, so one server serves every
gRPC in-edge of a replica. Callers keep ``grpc_channels`` channels per target
replica and go round-robin over them. A request that is not an envelope of this
run is rejected (counted) and answered INVALID_ARGUMENT with why: there is no broker
to keep it, so the sender is told.
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
SERVICE = "hopbench.Relay"


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
        return reply if reply is not None else Envelope()


class GrpcTransport(Transport):
    mode = "grpc"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self._server: grpc.aio.Server | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: dict[int, itertools.cycle[hopbench_pb2_grpc.RelayStub]] = {}
        # built once per edge: grpc converts a tuple into Metadata on every call otherwise
        self._metadata: dict[int, grpc.aio.Metadata] = {}

    async def start(self) -> None:
        if not self.handlers:
            return
        host, port = self.context.bind_address("grpc")
        address = f"{host}:{port}"
        self._server = grpc.aio.server()
        _Relay(self).add_to(self._server)
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
        why = self.admission.check(reply, clock.now_ns())
        if why is not None:
            self.admission.reject(f"replies ({edge.name})", why)
            raise TransportError(f"{edge.name}: the reply was rejected: {why}")
        return reply

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._call(edge, "Cast", env)

    async def _call(self, edge: Edge, method: str, env: Envelope) -> Any:
        stub = self._next_stub(edge)
        metadata = self._metadata.get(edge.index)
        if metadata is None:
            metadata = self._metadata[edge.index] = grpc.aio.Metadata((EDGE_KEY, str(edge.index)))
        try:
            return await getattr(stub, method)(
                env, timeout=self.settings_for(edge).request_timeout_s, metadata=metadata
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
