"""Concurrency inside a replica: where its CPU work runs, and the lock on a hot key.

The work's CPU part runs on the event loop (the default: it blocks every other message,
as real work in an async service does) or on a pool of ``cpu_threads`` threads. Python
threads share one GIL, so the pool buys no parallel CPU: it lets the loop keep
receiving while a thread spins, and costs the switches between threads. A thread's spin
counts its own CPU time (not the wall clock), so threads waiting for the GIL still do
their whole share of work and the pool cannot look faster than the CPU it had.

The lock (hopbench.config.locking) guards the key each message touches: pessimistic
holds it across the work, optimistic redoes the work when another message changed the
key meanwhile. Conflicts need the work to yield (awaited I/O, or CPU on the pool): CPU
on the loop runs one message at a time, so nothing can change a key under it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from hopbench.config.topology import Service
from hopbench.errors import TransportError
from hopbench.services.work import burn_cpu

Work = Callable[[], Awaitable[None]]


def burn_thread_cpu(cpu_us: int) -> None:
    """Spin until this thread has used cpu_us of CPU: the GIL's waits do not count."""
    if cpu_us <= 0:
        return
    end = time.thread_time_ns() + cpu_us * 1000
    while time.thread_time_ns() < end:
        pass


class WorkLimits:
    """One replica's CPU placement and key locks, and what they cost (counted)."""

    def __init__(self, service: Service, replica: int) -> None:
        self.service = service
        self._pool = (
            ThreadPoolExecutor(service.cpu_threads, thread_name_prefix=f"{service.name}-cpu")
            if service.cpu_threads is not None
            else None
        )
        self._lock = service.lock
        self._rng = random.Random(replica)  # the keys drawn: the same sequence every run
        self._locks: dict[int, asyncio.Lock] = {}
        self._versions: dict[int, int] = {}
        self.lock_waits = 0  # pessimistic: messages that found their key's lock held
        self.lock_retries = 0  # optimistic: work redone after a failed compare-and-set

    async def burn(self, cpu_us: int) -> None:
        """The CPU part of the work: on the loop, or on a thread of the pool."""
        if self._pool is None:
            burn_cpu(cpu_us)
        elif cpu_us > 0:
            await asyncio.get_running_loop().run_in_executor(self._pool, burn_thread_cpu, cpu_us)

    def _key(self) -> int:
        assert self._lock is not None
        if self._lock.keys == 1 or self._rng.random() < self._lock.hot:
            return 0
        return self._rng.randrange(self._lock.keys)

    async def run(self, work: Work) -> None:
        """Do the work under the service's lock, if it has one."""
        if self._lock is None:
            await work()
        elif self._lock.mode == "pessimistic":
            await self._pessimistic(self._key(), work)
        else:
            await self._optimistic(self._key(), work)

    async def _pessimistic(self, key: int, work: Work) -> None:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        if lock.locked():
            self.lock_waits += 1
        async with lock:
            await work()

    async def _optimistic(self, key: int, work: Work) -> None:
        assert self._lock is not None
        tries = self._lock.max_retries + 1
        for attempt in range(tries):
            version = self._versions.get(key, 0)
            await work()
            if self._versions.get(key, 0) == version:  # compare-and-set: nobody wrote it
                self._versions[key] = version + 1
                return
            if attempt + 1 < tries:
                self.lock_retries += 1
        raise TransportError(
            f"{self.service.name}: key {key} changed under every one of "
            f"{self._lock.max_retries + 1} tries (optimistic lock, max_retries "
            f"{self._lock.max_retries})"
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
