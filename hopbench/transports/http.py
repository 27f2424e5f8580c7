"""HTTP: ``POST /edges/{index}`` with the envelope as the body. Request-reply answers
200 with the reply; fire-and-forget answers 202 on arrival and does the work after.

Server: FastAPI on uvicorn (uvloop, httptools). Client: the edge's ``http_client``
(aiohttp by default, httpx or pyreqwest: hopbench.transports.httpclients), one pooled
client per process and distinct client settings, round-robin over the target's
replicas. What each library costs is measured (docs/findings.md, "Lever: clients").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from fastapi import FastAPI, Request, Response

from hopbench import clock
from hopbench.config.topology import Edge
from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports.base import Handler, Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.httpclients import CONTENT_TYPE, HttpClient, make_http_client


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the service process owns its signals


def _endpoint(edge: Edge, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def hop(request: Request) -> Response:
        try:
            env = Envelope.FromString(await request.body())
            reply = await handler(edge, env, clock.now_ns())
        except TransportError as exc:
            return Response(str(exc), status_code=502)
        body = reply.SerializeToString() if reply is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    return hop


class HttpTransport(Transport):
    mode = "http"

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self._clients: dict[tuple[str, int, float], HttpClient] = {}
        self._server: _Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._urls: dict[int, itertools.cycle[str]] = {}
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
                _endpoint(edge, handler) if edge.is_sync else self._cast_endpoint(edge, handler)
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
        self._server = _Server(config)
        self._serve_task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serve_task.done():
                exc = self._serve_task.exception()
                raise TransportError(f"HTTP server on {host}:{port} did not start: {exc}")
            await asyncio.sleep(0.01)

    def _cast_endpoint(
        self, edge: Edge, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """Fire-and-forget: answer 202 on arrival, do the work afterwards."""
        background = self._background

        async def cast(request: Request) -> Response:
            env = Envelope.FromString(await request.body())
            task = asyncio.create_task(handler(edge, env, clock.now_ns()))
            background.add(task)
            task.add_done_callback(background.discard)
            return Response(status_code=202)

        return cast

    def _client_for(self, edge: Edge) -> HttpClient:
        """One pooled client per distinct (library, connections, timeout) among the edges."""
        settings = self.settings_for(edge)
        key = (settings.http_client, settings.http_connections, settings.request_timeout_s)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = make_http_client(settings)
        return client

    def _next_url(self, edge: Edge) -> str:
        urls = self._urls.get(edge.index)
        if urls is None:
            replicas = self.context.endpoints["http"][edge.target]
            urls = self._urls[edge.index] = itertools.cycle(
                [f"http://{hp}/edges/{edge.index}" for hp in replicas]
            )
        return next(urls)

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        return Envelope.FromString(await self._post(edge, env, 200))

    async def publish(self, edge: Edge, env: Envelope) -> None:
        await self._post(edge, env, 202)

    async def _post(self, edge: Edge, env: Envelope, expected_status: int) -> bytes:
        client = self._client_for(edge)
        try:
            status, body = await client.post(self._next_url(edge), env.SerializeToString())
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
