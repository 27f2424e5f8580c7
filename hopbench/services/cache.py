"""A service's cache (``work: {cache: ...}``, hopbench.config.cache): one lookup per
message, before the service's own work.

Keys are drawn by an exact inverse-CDF Zipf sampler (rank r of n with probability
∝ r^-skew: a cumulative table and a binary search, pure Python, seeded per replica),
not numpy's ``zipf``, which draws from an unbounded support and cannot take an
exponent ≤ 1.

A value is when it was loaded (the run's clock). The source's value of each key
changes ``update_rate`` times a second, at instants fixed per key (a phase spread
over the keys), so every replica agrees on whether a served value was superseded
without any shared state. Values in Redis live under ``hopbench:<run_id>:<service>:``
with the TTL as Redis's own expiry (whole ms); each replica deletes the run's keys
when it closes, and the expiry removes any a killed replica left.
"""

from __future__ import annotations

import asyncio
import random
import time
from bisect import bisect_right
from itertools import accumulate
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hopbench import clock
from hopbench.config.cache import DEFAULT_REDIS_URL, CacheSpec
from hopbench.errors import BrokerUnavailable, TransportError
from hopbench.measure.cachestats import CacheStats
from hopbench.services.work import do_work


class ZipfKeys:
    """Keys 0..n-1, key k (rank k+1) with probability ∝ (k+1)^-skew."""

    def __init__(self, n: int, skew: float, rng: random.Random) -> None:
        self._cdf = list(accumulate((rank**-skew for rank in range(1, n + 1)), initial=0.0))[1:]
        self._total = self._cdf[-1]
        self._last = n - 1
        self._rng = rng

    def draw(self) -> int:
        return min(bisect_right(self._cdf, self._rng.random() * self._total), self._last)


class Store(Protocol):
    async def get(self, key: int) -> int | None:
        """When the key's value was loaded, or None: not cached (or expired)."""
        ...

    async def put(self, key: int, loaded_ns: int) -> None: ...

    async def close(self) -> None: ...


class LocalStore:
    """This replica's own dict: no hop, and no other replica's loads."""

    def __init__(self, ttl_ms: float) -> None:
        self._ttl_ns = int(ttl_ms * 1_000_000)
        self._values: dict[int, tuple[int, int]] = {}  # key -> (loaded_ns, expires_ns)

    async def get(self, key: int) -> int | None:
        found = self._values.get(key)
        if found is None:
            return None
        if clock.now_ns() >= found[1]:
            del self._values[key]
            return None
        return found[0]

    async def put(self, key: int, loaded_ns: int) -> None:
        self._values[key] = (loaded_ns, loaded_ns + self._ttl_ns)

    async def close(self) -> None:
        self._values.clear()


class RedisStore:
    """One Redis shared by every replica of the service: a round trip per lookup."""

    def __init__(self, url: str, prefix: str, ttl_ms: float, connections: int) -> None:
        self.url = url
        self.prefix = prefix
        self._ttl_ms = max(1, round(ttl_ms))
        # lookups beyond the pool wait for a connection (the wait is in their time)
        # rather than fail, as redis-py's default pool does past 100
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=connections, timeout=None
        )
        self._client = aioredis.Redis(connection_pool=pool)

    async def get(self, key: int) -> int | None:
        try:
            value = await self._client.get(f"{self.prefix}{key}")
        except (RedisError, OSError) as exc:
            raise TransportError(f"cache: Redis at {self.url}: {exc}") from None
        return None if value is None else int(value)

    async def put(self, key: int, loaded_ns: int) -> None:
        try:
            await self._client.set(f"{self.prefix}{key}", loaded_ns, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise TransportError(f"cache: Redis at {self.url}: {exc}") from None

    async def close(self) -> None:
        try:
            await delete_prefix(self._client, self.prefix)
        except (RedisError, OSError):
            pass  # the keys expire by themselves
        finally:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()


async def delete_prefix(client: aioredis.Redis, prefix: str) -> int:
    """Delete every key under prefix; how many there were."""
    deleted = 0
    batch: list[bytes] = []
    async for name in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            deleted += await client.delete(*batch)
            batch.clear()
    if batch:
        deleted += await client.delete(*batch)
    return deleted


def key_prefix(run_id: str, service: str) -> str:
    return f"hopbench:{run_id}:{service}:"


class ServiceCache:
    """One replica's cache: look up a key; on a miss, do the miss's work and store it."""

    def __init__(self, spec: CacheSpec, store: Store, seed: str) -> None:
        self.spec = spec
        self.store = store
        self.stats = CacheStats()
        self._keys = ZipfKeys(spec.keys, spec.skew, random.Random(seed))
        self._period_ns = int(1e9 / spec.update_rate) if spec.update_rate > 0 else 0

    @classmethod
    def of(
        cls, spec: CacheSpec, run_id: str, service: str, replica: int, redis_url: str | None
    ) -> ServiceCache:
        store: Store
        if spec.store == "redis":
            url = redis_url or DEFAULT_REDIS_URL
            store = RedisStore(url, key_prefix(run_id, service), spec.ttl_ms, spec.connections)
        else:
            store = LocalStore(spec.ttl_ms)
        return cls(spec, store, f"{run_id}/{service}/{replica}")

    def superseded(self, key: int, loaded_ns: int, now_ns: int) -> bool:
        """Has the source's value of key changed since loaded_ns?"""
        period = self._period_ns
        if period <= 0:
            return False
        phase = (key * 2_654_435_761) % period  # spread the keys' update instants
        return (now_ns - phase) // period > (loaded_ns - phase) // period

    async def lookup(self, counted: bool) -> None:
        """One message's lookup; counted: in the measured window (not warm-up)."""
        key = self._keys.draw()
        start = time.perf_counter_ns()
        loaded_ns = await self.store.get(key)
        if loaded_ns is not None:
            if counted:
                now = clock.now_ns()
                self.stats.hit(
                    time.perf_counter_ns() - start,
                    max(now - loaded_ns, 0),
                    self.superseded(key, loaded_ns, now),
                )
            return
        miss = self.spec.miss
        await do_work(miss.cpu_us, miss.io_ms)
        await self.store.put(key, clock.now_ns())
        if counted:
            self.stats.miss(time.perf_counter_ns() - start)

    async def close(self) -> None:
        await self.store.close()


async def reach_redis(url: str, wait_s: float) -> None:
    """Ping the Redis a shared cache uses, for up to wait_s; BrokerUnavailable, naming
    the URL and the fix, when it does not answer."""
    deadline = time.monotonic() + wait_s
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        while True:
            try:
                await client.ping()
                return
            except (RedisError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(
                        f"cache store redis: no Redis at {url} ({exc}); start Redis there, "
                        "pass --redis-url, or use store: local"
                    ) from None
                await asyncio.sleep(0.5)
    finally:
        await client.aclose()
