"""One mode's edges of one process on two client libraries (``rabbitmq_client`` set per
edge): each edge goes to the transport of its own library, and the process sees one."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hopbench.config.topology import Edge
from hopbench.errors import FirstError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Handler, Settled, Transport
from hopbench.transports.context import TransportContext


class SplitByLibrary(Transport):
    mode = "split"  # its parts have the mode

    def __init__(
        self,
        context: TransportContext,
        parts: Mapping[str, Transport],
        library_of: Callable[[Edge], str],
    ) -> None:
        self.parts = dict(parts)
        super().__init__(context)
        self.library_of = library_of

    def _part(self, edge: Edge) -> Transport:
        return self.parts[self.library_of(edge)]

    def serve(self, edge: Edge, handler: Handler, *, at_once: bool = False) -> None:
        self._part(edge).serve(edge, handler, at_once=at_once)

    async def start(self) -> None:
        for part in self.parts.values():
            await part.start()

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        return await self._part(edge).request(edge, env)

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._part(edge).publish(edge, env)

    async def send(self, edge: Edge, env: Envelope, settled: Settled) -> None:
        await self._part(edge).send(edge, env, settled)

    async def stop_serving(self) -> None:
        for part in self.parts.values():
            await part.stop_serving()

    async def close(self) -> None:
        for part in self.parts.values():
            await part.close()

    # what a process reads of its transports: the parts' together, and this one's own
    @property
    def late_replies(self) -> int:
        return sum(p.late_replies for p in self.parts.values())

    @property
    def pending_replies(self) -> int:
        return sum(p.pending_replies for p in self.parts.values())

    @property
    def errors(self) -> int:
        return self._own_errors + sum(p.errors for p in self.parts.values())

    @errors.setter
    def errors(self, value: int) -> None:
        self._own_errors = value

    @property
    def first_error(self) -> FirstError | None:
        seen = [self._own_first, *(p.first_error for p in self.parts.values())]
        return min((e for e in seen if e is not None), key=lambda e: e.t_ns, default=None)

    @first_error.setter
    def first_error(self, value: FirstError | None) -> None:
        self._own_first = value
