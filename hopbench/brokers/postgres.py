"""PostgreSQL, reached by URL (default: the local server on 127.0.0.1:5432), for the
services whose work runs a query per message (``work.db``, hopbench.config.db).

Before any service starts, the orchestrator creates one table per such service,
named with the run's id, fills it with ``rows`` rows (key ``k`` from 0, a 32-character
value ``v``), indexes ``k`` when the service asks, and ANALYZEs it so the planner
knows its size. The run's exit stack drops the tables at the end, whatever happened
(an error, Ctrl-C, SIGTERM), over a new connection when the first is gone. Every
connection of the run carries ``application_name`` hopbench-<run id>: the sampler
counts the run's queries the server is running from ``pg_stat_activity``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from hopbench.brokers.wait import NotYet, cleanup_limits, refused, timed_out, wait_for_broker
from hopbench.config.db import DbWork
from hopbench.config.secrets import redact
from hopbench.config.topology import Topology
from hopbench.errors import BrokerUnavailable

log = logging.getLogger(__name__)
BROKER = "PostgreSQL"
START_IT = (
    "Start a local server (`service postgresql start`, or "
    "`docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`) "
    "or pass --postgres-url"
)
CLEANUP_TIMEOUT_S = 15.0
RECONNECT_WAIT_S = 5.0
MAX_NAME = 63  # PostgreSQL truncates identifiers longer than this
# Refusals: waiting would not change the answer (wrong password, no such database or role).
_REFUSED = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)
# Not yet: nothing listens, the server is starting or shutting down, a dropped connection.
_NOT_YET = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
)


def table_name(run_id: str, topology: Topology, service: str) -> str:
    """The service's table in this run: hopbench_<run id>_<position>_<service>, lowercase."""
    position = list(topology.services).index(service)
    slug = re.sub(r"[^a-z0-9_]", "_", service.lower())
    return f"hopbench_{run_id}_{position}_{slug}"[:MAX_NAME]


def application_name(run_id: str, service: str | None = None) -> str:
    """What each connection of the run says it is (pg_stat_activity): a service's
    queries hopbench-<run id>/<service>; the orchestrator's own hopbench-<run id>."""
    name = f"hopbench-{run_id}" if service is None else f"hopbench-{run_id}/{service}"
    return name[:MAX_NAME]


def db_services(topology: Topology) -> dict[str, DbWork]:
    return {name: s.db for name, s in topology.services.items() if s.db is not None}


async def open_connection(url: str, timeout_s: float, app: str) -> asyncpg.Connection:
    """One connection attempt: NotYet when nothing (or nothing ready) answers;
    BrokerUnavailable at once when the server refuses us."""
    where = redact(url)
    try:
        return await asyncpg.connect(
            url, timeout=timeout_s, server_settings={"application_name": app}
        )
    except _REFUSED as exc:
        raise BrokerUnavailable(
            refused(
                BROKER, where, str(exc), "Check the user, password and database of --postgres-url"
            )
        ) from exc
    except (*_NOT_YET, asyncpg.PostgresError) as exc:
        raise NotYet(timed_out(exc)) from exc


class PostgresDb:
    """The run's database: its tables, made and dropped, and what the server runs now."""

    def __init__(self, url: str, run_id: str) -> None:
        self.url = url
        self.run_id = run_id
        self.server_version = "unknown"
        self.tables: dict[str, str] = {}  # service -> its table
        self._made: set[str] = set()  # the tables filled (provisioning again skips them)
        self._connection: asyncpg.Connection | None = None

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "localhost", parts.port or 5432

    async def connect(self, wait_s: float = 0.0, say: Callable[[str], None] = log.info) -> None:
        connection = await wait_for_broker(
            BROKER, redact(self.url), self._open, wait_s=wait_s, say=say, fix=START_IT
        )
        self._connection = connection
        version = str(await connection.fetchval("SHOW server_version"))
        self.server_version = version.split()[0] if version.strip() else "unknown"

    async def _open(self, timeout_s: float) -> asyncpg.Connection:
        return await open_connection(self.url, timeout_s, application_name(self.run_id))

    async def provision(self, topology: Topology) -> None:
        """Create and fill each database service's table (dropped again by ``close``)."""
        assert self._connection is not None
        for service, work in db_services(topology).items():
            table = table_name(self.run_id, topology, service)
            if table in self._made:
                continue
            self.tables[service] = table  # before it exists: a half-made table is dropped too
            try:
                await self._make(table, work)
                self._made.add(table)
            except asyncpg.PostgresError as exc:
                raise BrokerUnavailable(
                    f"{BROKER} at {redact(self.url)} could not create the table {table} of "
                    f"{service}: {exc}. Check that the user of --postgres-url may create tables"
                ) from exc

    async def _make(self, table: str, work: DbWork) -> None:
        assert self._connection is not None
        async with self._connection.transaction():
            await self._connection.execute(
                f'CREATE TABLE "{table}" (k integer NOT NULL, v text NOT NULL)'
            )
            await self._connection.execute(
                f'INSERT INTO "{table}" SELECT g, md5(g::text) FROM generate_series(0, $1 - 1) g',
                work.rows,
            )
            if work.index:
                await self._connection.execute(f'CREATE INDEX "{table}_k" ON "{table}" (k)')
        await self._connection.execute(f'ANALYZE "{table}"')

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        where = f"PostgreSQL {self.server_version} at {host}:{port}"
        return {
            "kind": "postgresql",
            "version": self.server_version,
            "url": redact(self.url),
            "where": where,
            "label": f"postgresql ({where})",
            "tables": dict(self.tables),
        }

    async def active(self) -> dict[str, int | None]:
        """Per database service: the run's queries the server is running now (None:
        not read)."""
        found: dict[str, int | None] = dict.fromkeys(self.tables)
        if self._connection is None or self._connection.is_closed():
            return found
        names = {application_name(self.run_id, service): service for service in self.tables}
        try:
            rows = await self._connection.fetch(
                "SELECT application_name, count(*) AS n FROM pg_stat_activity "
                "WHERE application_name = ANY($1::text[]) AND state = 'active' "
                "GROUP BY application_name",
                list(names),
                timeout=1.0,
            )
        except (*_NOT_YET, asyncpg.PostgresError, asyncpg.InterfaceError):
            return found
        counts = {names[row["application_name"]]: int(row["n"]) for row in rows}
        return {service: counts.get(service, 0) for service in self.tables}

    async def close(self) -> None:
        """Drop the run's tables (over a new connection if the first is gone) and hang
        up. A best effort, bounded in time, that never masks the run's own error: a
        table that could not be dropped is named in the log."""
        cleanup_s, reconnect_s = cleanup_limits(CLEANUP_TIMEOUT_S, RECONNECT_WAIT_S)
        try:
            if self.tables:
                await asyncio.wait_for(self._drop_all(reconnect_s), cleanup_s)
        except (*_NOT_YET, asyncpg.PostgresError, asyncpg.InterfaceError, BrokerUnavailable) as exc:
            log.warning(
                "could not drop the run's tables %s at %s (%s); drop them with "
                "DROP TABLE IF EXISTS <name>",
                ", ".join(self.tables.values()), redact(self.url), timed_out(exc),
            )  # fmt: skip
        finally:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close(timeout=2.0)
            self._connection = None

    async def _drop_all(self, reconnect_s: float) -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = await wait_for_broker(
                BROKER, redact(self.url), self._open, wait_s=reconnect_s, say=log.info,
                fix="drop its tables by hand",
            )  # fmt: skip
            self._connection = connection
        assert connection is not None
        for service, table in list(self.tables.items()):
            await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
            del self.tables[service]
