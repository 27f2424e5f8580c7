"""HTTP: ``POST /edges/{index}`` with the envelope as the body. Request-reply answers
200 with the reply; fire-and-forget answers 202 on arrival and does the work after.
The body is the edge's encoding (Content-Type) and compression (Content-Encoding),
the reply's too; both ends read them from the edge's settings.

Server: FastAPI on uvicorn (uvloop, httptools). Client: the edge's ``http_client``
(pyreqwest by default, aiohttp on an edge with a lever only it carries, or httpx:
hopbench.transports.httpclients), one client per process and distinct connection
settings, round-robin over the target's replicas.
What each library costs is measured (docs/findings.md, "Lever: clients"). Connections
per edge (hopbench.config.settings): ``http_connections`` pooled ones, or with
``keepalive`` off a new TCP connection per request (closed after its response); with
``tls``, HTTPS on the run's own CA (hopbench.transports.tls), resuming sessions unless
``tls_resumption`` is off. The connection levers are carried by the aiohttp client
(the topology's checks refuse them with another library).

A body that is not an envelope of this run is rejected (counted) and answered 400
with why: there is no broker to keep it, so the sender is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request, Response

from hopbench import clock
from hopbench.config.settings import http_library
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Decoder, Handler, Transport
from hopbench.transports.codec import CONTENT_TYPES
from hopbench.transports.context import TransportContext
from hopbench.transports.httpclients import HttpClient, make_http_client
from hopbench.transports.tls import ResumingContext, client_context, server_context


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the service process owns its signals


def _headers(transport: Transport, edge: Edge) -> dict[str, str]:
    """Content-Type, and Content-Encoding when the edge compresses."""
    settings = transport.settings_for(edge)
    headers = {"content-type": CONTENT_TYPES[settings.encoding]}
    if settings.compression != "none":
        headers["content-encoding"] = settings.compression
    return headers


@dataclass(frozen=True, slots=True)
class _Calls:
    """What a call over one out-edge needs, looked up once per edge, not per message."""

    client: HttpClient
    urls: Iterator[str]  # round-robin over the target's replicas
    headers: dict[str, str]
    replies: str  # where a rejected reply is said to have been received
    decode: Decoder


def _refused(transport: Transport) -> Response:
    """A rejected message: 400, with why (the sender sees it; nothing is dead-lettered)."""
    return Response(f"rejected: {transport.admission.last}", status_code=400)


class HttpTransport(Transport):
    mode = "http"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self._clients: dict[tuple[str, int, float, bool, bool, bool], HttpClient] = {}
        self._client_tls: list[ResumingContext] = []
        self._server: _Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._calls: dict[int, _Calls] = {}
        self._background: set[asyncio.Task[Envelope | None]] = set()

    async def start(self) -> None:
        if self.handlers:
            await self._start_server()

    async def _start_server(self) -> None:
        host, port = self.context.bind_address("http")
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        # One fixed route per in-edge: a path parameter would cost FastAPI a
        # dependency-solving pass per request (measured with py-spy).
        for edge, handler in self.handlers.values():
            endpoint = (
                self._endpoint(edge, handler)
                if edge.is_sync
                else self._cast_endpoint(edge, handler)
            )
            app.add_api_route(f"/edges/{edge.index}", endpoint, methods=["POST"])

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # loopback, no proxy: skip the middleware
            server_header=False,
        )
        secure = [e for e, _ in self.handlers.values() if self.settings_for(e).tls]
        if secure:  # the topology's checks make every in-edge agree
            config.load()
            config.ssl = server_context(self.context.tls_material(secure[0]))
        self._server = _Server(config)
        self._serve_task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serve_task.done():
                exc = self._serve_task.exception()
                raise TransportError(f"HTTP server on {host}:{port} did not start: {exc}")
            await asyncio.sleep(0.01)

    def _endpoint(self, edge: Edge, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        headers = _headers(self, edge)

        async def hop(request: Request) -> Response:
            env = await self.receive(await request.body(), edge.name, self.decoder(edge))
            if env is None:
                return _refused(self)
            try:
                reply = await handler(edge, env, clock.now_ns())
            except TransportError as exc:
                return Response(str(exc), status_code=502)
            body = self.pack(edge, reply, reply=True) if reply is not None else b""
            return Response(body, headers=headers)

        return hop

    def _cast_endpoint(
        self, edge: Edge, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """Fire-and-forget: answer 202 on arrival, do the work afterwards."""
        background = self._background

        async def cast(request: Request) -> Response:
            env = await self.receive(await request.body(), edge.name, self.decoder(edge))
            if env is None:
                return _refused(self)
            task = asyncio.create_task(handler(edge, env, clock.now_ns()))
            background.add(task)
            task.add_done_callback(background.discard)
            return Response(status_code=202)

        return cast

    def _client_for(self, edge: Edge) -> HttpClient:
        """One client per distinct connection settings among the edges: its library,
        pooled (``http_connections``) or one connection per request (``keepalive``
        off), plain or TLS."""
        settings = self.settings_for(edge)
        key = (http_library(settings), settings.http_connections, settings.request_timeout_s,
               settings.keepalive, settings.tls, settings.tls_resumption)  # fmt: skip
        client = self._clients.get(key)
        if client is None:
            secure: ResumingContext | None = None
            if settings.tls:
                secure = client_context(self.context.tls_material(edge), settings.tls_resumption)
                self._client_tls.append(secure)
            client = self._clients[key] = make_http_client(
                settings, ssl=secure, on_open=self._opened
            )
        return client

    async def _opened(self, *_: object) -> None:
        self.connections_opened += 1

    @property
    def tls_handshakes(self) -> tuple[int, int]:
        """(TLS handshakes this process's clients finished, of which resumed)."""
        for context in self._client_tls:
            context.tally()
        return (
            sum(c.handshakes for c in self._client_tls),
            sum(c.resumed for c in self._client_tls),
        )

    def _calls_for(self, edge: Edge) -> _Calls:
        calls = self._calls.get(edge.index)
        if calls is None:
            replicas = self.context.endpoints["http"][edge.target]
            scheme = "https" if self.settings_for(edge).tls else "http"
            calls = self._calls[edge.index] = _Calls(
                client=self._client_for(edge),
                urls=itertools.cycle([f"{scheme}://{hp}/edges/{edge.index}" for hp in replicas]),
                headers=_headers(self, edge),
                replies=f"replies ({edge.name})",
                decode=self.decoder(edge),
            )
        return calls

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        calls = self._calls_for(edge)
        body = await self._post(edge, calls, env, 200)
        reply = await self.receive(body, calls.replies, calls.decode)
        if reply is None:
            raise TransportError(f"{edge.name}: the reply was rejected: {self.admission.last}")
        return reply

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._post(edge, self._calls_for(edge), env, 202)

    async def _post(self, edge: Edge, calls: _Calls, env: Envelope, expected_status: int) -> bytes:
        try:
            status, body = await calls.client.post(
                next(calls.urls), self.pack(edge, env), calls.headers
            )
        except TransportError as exc:
            raise TransportError(f"{edge.name}: {exc}") from exc
        if status != expected_status:
            raise TransportError(f"{edge.name}: HTTP {status}: {body[:200]!r}")
        return body

    async def stop_serving(self) -> None:
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await self._serve_task
            self._server = None

    async def close(self) -> None:
        await self.stop_serving()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
