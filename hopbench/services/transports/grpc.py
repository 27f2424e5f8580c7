"""gRPC: request-reply as the unary ``Relay.Call`` of hopbench.proto (grpc.aio).

The in-edge travels as the ``hb-edge`` metadata key, so one server serves every
gRPC in-edge of a replica. Callers keep ``grpc_channels`` channels per target
replica and go round-robin over them.
"""

from __future__ import annotations

import itertools

import grpc

from hopbench.proto import hopbench_pb2_grpc
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.services.transports.base import Process, Transport, TransportError
from hopbench.topology import Edge

EDGE_KEY = "hb-edge"


class _Relay(hopbench_pb2_grpc.RelayServicer):  # type: ignore[misc]
    def __init__(self, transport: GrpcTransport) -> None:
        self.handlers = transport.handlers

    async def Call(self, request: Envelope, context: grpc.aio.ServicerContext) -> Envelope:
        index = -1
        for key, value in context.invocation_metadata() or ():
            if key == EDGE_KEY:
                index = int(value)
        entry = self.handlers.get(index)
        if entry is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no edge {index} here")
            raise AssertionError("abort raises")
        edge, handler = entry
        try:
            reply = await handler(edge, request)
        except TransportError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return reply if reply is not None else Envelope()


class GrpcTransport(Transport):
    mode = "grpc"

    def __init__(self, process: Process) -> None:
        super().__init__(process)
        self._server: grpc.aio.Server | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: dict[int, itertools.cycle[hopbench_pb2_grpc.RelayStub]] = {}

    async def start(self) -> None:
        if not self.handlers:
            return
        address = self.process.spec.endpoints["grpc"][self.process.service][self.process.replica]
        self._server = grpc.aio.server()
        hopbench_pb2_grpc.add_RelayServicer_to_server(_Relay(self), self._server)
        if self._server.add_insecure_port(address) == 0:
            raise TransportError(f"gRPC server could not bind {address}")
        await self._server.start()

    def _next_stub(self, edge: Edge) -> hopbench_pb2_grpc.RelayStub:
        stubs = self._stubs.get(edge.index)
        if stubs is None:
            made = []
            for address in self.process.spec.endpoints["grpc"][edge.target]:
                for _ in range(self.settings.grpc_channels):
                    channel = grpc.aio.insecure_channel(address)
                    self._channels.append(channel)
                    made.append(hopbench_pb2_grpc.RelayStub(channel))
            stubs = self._stubs[edge.index] = itertools.cycle(made)
        return next(stubs)

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        try:
            reply: Envelope = await self._next_stub(edge).Call(
                env,
                timeout=self.settings.request_timeout_s,
                metadata=((EDGE_KEY, str(edge.index)),),
            )
        except grpc.aio.AioRpcError as exc:
            raise TransportError(f"{edge.name}: gRPC {exc.code().name}: {exc.details()}") from exc
        return reply

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
