"""The HTTP client libraries a caller can use, behind one small interface.

The edge setting ``http_client`` chooses one: ``aiohttp``, ``httpx`` (its default
asyncio transport, httpcore on anyio) or ``pyreqwest`` (Rust's reqwest and hyper on a
Tokio runtime of its own, with a hand-off to the event loop per request); by default
(``auto``) pyreqwest, or aiohttp on an edge that sets one of the levers only aiohttp
carries (hopbench.config.settings.http_library decides).
``make_http_client`` is the one place a client is built, for the service replicas and
the load workers alike: the library, its pool of ``http_connections`` per target, and
the request timeout. Each library's own errors become ``TransportError`` here, so the
HTTP transport never sees which library it holds. A library is imported only when a
client of it is built.
"""

from __future__ import annotations

import abc
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from hopbench.config.settings import Settings, http_library
from hopbench.errors import TransportError


class HttpClient(abc.ABC):
    """A pooled client of one library: POST a body, get the status and the body back."""

    library: ClassVar[str]

    @abc.abstractmethod
    def __init__(self, settings: Settings) -> None:
        """A pool of settings.http_connections per target, settings.request_timeout_s."""

    @abc.abstractmethod
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """The response's status and body as sent (not decompressed: the transport decodes
        and counts it); TransportError when there is no response."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the pool's connections."""


def _failed(exc: BaseException) -> TransportError:
    return TransportError(f"{type(exc).__name__}: {exc}")


OnOpen = Callable[..., Awaitable[None]]  # called for each new connection


class AiohttpClient(HttpClient):
    """The one that carries the connection levers: ``keepalive`` off (a connection per
    request), ``tls`` (the given SSL context, resuming sessions), and a count of the
    connections it opens."""

    library = "aiohttp"

    def __init__(
        self, settings: Settings, ssl: _ssl.SSLContext | None = None, on_open: OnOpen | None = None
    ) -> None:
        import aiohttp

        self._errors: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=settings.http_connections,
            ttl_dns_cache=None,
            force_close=not settings.keepalive,
            ssl=ssl if ssl is not None else False,
        )
        traces = aiohttp.TraceConfig()
        if on_open is not None:
            traces.on_connection_create_end.append(on_open)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout_s),
            auto_decompress=False,  # the reply is decoded (and its bytes counted) by the transport
            trace_configs=[traces],
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.read()
        except self._errors as exc:
            raise _failed(exc) from exc

    async def aclose(self) -> None:
        await self._session.close()


class HttpxClient(HttpClient):
    library = "httpx"

    def __init__(self, settings: Settings) -> None:
        import httpx

        self._errors: tuple[type[BaseException], ...] = (httpx.HTTPError, TimeoutError)
        size = settings.http_connections
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=httpx.Timeout(settings.request_timeout_s),
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            resp = await self._client.post(url, content=body, headers=headers)
        except self._errors as exc:
            raise _failed(exc) from exc
        return resp.status_code, resp.content

    async def aclose(self) -> None:
        await self._client.aclose()


class PyreqwestClient(HttpClient):
    library = "pyreqwest"

    def __init__(self, settings: Settings) -> None:
        from pyreqwest.client import ClientBuilder
        from pyreqwest.exceptions import PyreqwestError

        self._errors: tuple[type[BaseException], ...] = (PyreqwestError, TimeoutError)
        # max_connections: requests in flight per client, i.e. the pool's size; HTTP/1.1
        # only, as the other libraries speak it
        self._client: Any = (
            ClientBuilder()
            .max_connections(settings.http_connections)
            .pool_max_idle_per_host(settings.http_connections)
            .timeout(timedelta(seconds=settings.request_timeout_s))
            .http1_only()
            .build()
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            request = self._client.post(url).headers(dict(headers)).body_bytes(body).build()
            resp = await request.send()
            return int(resp.status), bytes(await resp.bytes())
        except self._errors as exc:
            raise _failed(exc) from exc

    async def aclose(self) -> None:
        await self._client.close()


HTTP_CLIENTS: dict[str, type[HttpClient]] = {
    cls.library: cls for cls in (AiohttpClient, HttpxClient, PyreqwestClient)
}


def make_http_client(
    settings: Settings, *, ssl: _ssl.SSLContext | None = None, on_open: OnOpen | None = None
) -> HttpClient:
    """The one place an HTTP client is built: the edge's library (http_library), pool
    size and timeout; with aiohttp, its connection levers too (the topology's checks
    refuse them with another library: unsupported_lever)."""
    library = http_library(settings)
    if library == "aiohttp":
        return AiohttpClient(settings, ssl, on_open)
    return HTTP_CLIENTS[library](settings)
