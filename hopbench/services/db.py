"""A service replica's database work: one query per message, through a pool.

The pool holds ``pool`` connections (asyncpg, opened at start, each with the run's
``application_name``). A query first waits for a free connection (``waiting``: the
replica's queue for the database, sampled once a second), then runs (``running``).
Both times are kept apart in HdrHistograms: a slow query and a pool too small are
different fixes. Keys are drawn uniformly from the table's rows.
"""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from hopbench import clock
from hopbench.brokers.postgres import START_IT, application_name, open_connection, table_name
from hopbench.brokers.wait import wait_for_broker
from hopbench.config.db import DbWork
from hopbench.config.secrets import redact
from hopbench.config.topology import Topology
from hopbench.errors import TransportError
from hopbench.measure.histogram import mean, new_histogram, record

QUERY_TIMEOUT_S = 30.0


class DbClient:
    def __init__(
        self,
        url: str,
        run_id: str,
        topology: Topology,
        service: str,
        work: DbWork,
        *,
        wait_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.url = url
        self.wait_s = wait_s  # how long start waits for the server (--brokers-wait)
        self.work = work
        self.app = application_name(run_id, service)
        self.table = table_name(run_id, topology, service)
        if work.query == "range":
            self.sql = f'SELECT k, v FROM "{self.table}" WHERE k >= $1 AND k < $1 + {work.span}'
            self.keys = work.rows - work.span + 1  # every range lies inside the table
        else:
            self.sql = f'SELECT v FROM "{self.table}" WHERE k = $1'
            self.keys = work.rows
        self._random = random.Random(seed)
        self._pool: asyncpg.Pool | None = None
        self.waiting = 0  # queries waiting for a free connection
        self.running = 0  # queries on a connection
        self.queries = 0
        self.errors = 0
        self.rows = 0  # rows the queries returned
        self.wait_us = new_histogram()
        self.query_us = new_histogram()

    async def start(self) -> None:
        """Open the pool's connections, waiting up to wait_s for the server."""
        await wait_for_broker(
            "PostgreSQL", redact(self.url), self._probe, wait_s=self.wait_s,
            say=lambda message: None, fix=START_IT,
        )  # fmt: skip
        size = self.work.pool
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=size,
            max_size=size,
            server_settings={"application_name": self.app},
        )

    async def _probe(self, timeout_s: float) -> None:
        connection = await open_connection(self.url, timeout_s, self.app)
        await connection.close()

    async def query(self) -> None:
        """One query: wait for a connection, run, count. TransportError when it fails."""
        assert self._pool is not None
        key = self._random.randrange(self.keys)
        asked_ns = clock.now_ns()
        self.waiting += 1
        waited = False
        try:
            async with self._pool.acquire() as connection:
                self.waiting -= 1
                waited = True
                got_ns = clock.now_ns()
                self.running += 1
                try:
                    rows = await connection.fetch(self.sql, key, timeout=QUERY_TIMEOUT_S)
                finally:
                    self.running -= 1
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            self.errors += 1
            raise TransportError(f"{self.table}: the query failed: {exc}") from exc
        finally:
            if not waited:  # failed or cancelled before a connection was free
                self.waiting -= 1
        done_ns = clock.now_ns()
        self.queries += 1
        self.rows += len(rows)
        record(self.wait_us, (got_ns - asked_ns) // 1000)
        record(self.query_us, (done_ns - got_ns) // 1000)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def report(self) -> dict[str, Any]:
        """The replica's figures, as its row in the results carries them."""
        return {
            "query": self.work.query,
            "index": self.work.index,
            "rows": self.work.rows,
            "pool": self.work.pool,
            "queries": self.queries,
            "errors": self.errors,
            "rows_returned": self.rows,
            "query_ms": _percentiles(self.query_us),
            "wait_ms": _percentiles(self.wait_us),
        }


def _percentiles(histogram: Any) -> dict[str, float]:
    """mean, p50, p99 and max in ms (0 for none)."""
    if histogram.get_total_count() == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "mean": round(mean(histogram) / 1000, 3),
        "p50": round(histogram.get_value_at_percentile(50) / 1000, 3),
        "p99": round(histogram.get_value_at_percentile(99) / 1000, 3),
        "max": round(histogram.get_max_value() / 1000, 3),
    }
