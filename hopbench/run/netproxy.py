"""A TCP proxy a run puts in front of a broker, only when a fault drops or delays the
connections to it: the children are given the proxy's address, the orchestrator keeps
the broker's own (provisioning, queue depths and cleanup are not faulted).

``drop()`` aborts every connection through it at once (the clients must reconnect:
the proxy keeps listening); ``latency_s`` holds every chunk forwarded, each way, that
long before it is written, in order, so requests stay pipelined and only their
latency grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)
CHUNK = 65536


@dataclass(eq=False)  # by identity: a member of a set
class _Link:
    """One client connection and the proxy's connection to the broker for it."""

    client: asyncio.StreamWriter
    broker: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.broker):
            writer.transport.abort()


class LinkProxy:
    """Listens on a free loopback port and forwards each connection to host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.latency_s = 0.0
        self.listen_port = 0
        self.opened = 0  # connections accepted so far
        self._links: set[_Link] = set()
        self._new_link = asyncio.Event()  # set at each connection accepted
        self._server: asyncio.Server | None = None

    @property
    def open_links(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    def url_for(self, url: str) -> str:
        """The broker's URL with the proxy's host and port (credentials, vhost and query
        kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.listen_port}"))

    async def await_opened(self, total: int, timeout_s: float) -> None:
        """Until ``opened`` reaches ``total``, or ``timeout_s`` is over."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.opened < total:
                    self._new_link.clear()
                    await self._new_link.wait()

    def drop(self) -> int:
        """Abort every connection through the proxy; how many there were."""
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
            for task in link.tasks:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            log.info("proxy: %s:%d does not answer: %r", self.host, self.port, exc)
            writer.transport.abort()
            return
        self.opened += 1
        self._new_link.set()
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()
            for task in link.tasks:
                task.cancel()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward one direction; each chunk is written ``latency_s`` after it was read
        (the latency in force when it was read), in order."""
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        writer = asyncio.create_task(self._write(held, sink))
        try:
            while data := await source.read(CHUNK):
                held.put_nowait((time.monotonic() + self.latency_s, data))
            held.put_nowait((0.0, b""))
            await writer  # what was read before the end is still delivered
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            writer.cancel()

    @staticmethod
    async def _write(held: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # the other side went away: the link ends
            while True:
                due, data = await held.get()
                if not data:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                sink.write(data)
                await sink.drain()
