"""A raw client in a process of its own, for bench/generator_cost.py.

    python -m bench.raw_callers MODE CLIENT ADDRESS SECONDS BODY_FILE

keeps 32 requests in flight against one hopbench service (``http``: POST
``/edges/0``; ``grpc``: the Relay's ``Call`` with the edge in the metadata), with the
body from BODY_FILE (an envelope the service admits), for 1 s of warm-up and then
SECONDS measured, and prints one JSON line: the requests completed in the measured
part, its wall seconds, and the CPU seconds of this whole process in it (every
thread: a Rust client's runtime threads count too). No hopbench code is on the
request path: this is the library's own cost, the floor a generator built on it has.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvloop

IN_FLIGHT = 32
WARMUP_S = 1.0
CONTENT_TYPE = "application/x-protobuf"
Call = Callable[[], Awaitable[None]]


def _expect(status: int, body: bytes, client: str) -> None:
    if status != 200 or not body:
        raise SystemExit(f"{client}: HTTP {status}: {body[:200]!r}")


@asynccontextmanager
async def aiohttp_caller(url: str, body: bytes) -> AsyncIterator[Call]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=IN_FLIGHT, ttl_dns_cache=None)
    headers = {"content-type": CONTENT_TYPE}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def call() -> None:
            async with session.post(url, data=body) as resp:
                _expect(resp.status, await resp.read(), "aiohttp")

        yield call


@asynccontextmanager
async def pyreqwest_caller(url: str, body: bytes) -> AsyncIterator[Call]:
    from pyreqwest.client import ClientBuilder

    client: Any = (
        ClientBuilder()
        .max_connections(IN_FLIGHT)
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(timedelta(seconds=30))
        .default_headers({"content-type": CONTENT_TYPE})
        .http1_only()
        .build()
    )
    async with client:

        async def call() -> None:
            resp = await client.post(url).body_bytes(body).build().send()
            _expect(int(resp.status), bytes(await resp.bytes()), "pyreqwest")

        yield call


@asynccontextmanager
async def httpx_caller(url: str, body: bytes) -> AsyncIterator[Call]:
    import httpx

    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    headers = {"content-type": CONTENT_TYPE}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:

        async def call() -> None:
            resp = await client.post(url, content=body)
            _expect(resp.status_code, resp.content, "httpx")

        yield call


@asynccontextmanager
async def grpc_caller(address: str, body: bytes) -> AsyncIterator[Call]:
    import grpc

    from hopbench.transports.grpc import EDGE_KEY, SERVICE

    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(
            f"/{SERVICE}/Call",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        metadata = ((EDGE_KEY, "0"),)

        async def call() -> None:
            reply = await method(body, timeout=30, metadata=metadata)
            if not reply:
                raise SystemExit("grpc: an empty reply")

        yield call


CALLERS = {
    ("http", "aiohttp"): aiohttp_caller,
    ("http", "pyreqwest"): pyreqwest_caller,
    ("http", "httpx"): httpx_caller,
    ("grpc", "grpcio"): grpc_caller,
}


async def drive(call: Call, seconds: float) -> dict[str, float]:
    """IN_FLIGHT callers flat out; count and CPU over the part after the warm-up."""
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + WARMUP_S
    end = measure_from + seconds
    done = 0
    marks: dict[str, float] = {}

    async def caller() -> None:
        nonlocal done
        while (now := loop.time()) < end:
            if now >= measure_from and not marks:
                marks.update(cpu=time.process_time(), wall=time.monotonic(), done=done)
            await call()
            done += 1

    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    if not marks:
        raise SystemExit("the warm-up took the whole run")
    return {
        "requests": done - marks["done"],
        "wall_s": time.monotonic() - marks["wall"],
        "cpu_s": time.process_time() - marks["cpu"],
    }


async def main(mode: str, client: str, address: str, seconds: float, body: bytes) -> None:
    target = f"http://{address}/edges/0" if mode == "http" else address
    async with CALLERS[(mode, client)](target, body) as call:
        print(json.dumps(await drive(call, seconds)), flush=True)


if __name__ == "__main__":
    mode, client, address, seconds, body_file = sys.argv[1:6]
    uvloop.run(main(mode, client, address, float(seconds), Path(body_file).read_bytes()))
