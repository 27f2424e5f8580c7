"""The database lever (a service's ``work.db``): bad values are refused naming the
field; the run's tables are made, filled, indexed as asked and dropped, even when
the run is stopped; and the effects that are physical show in their direction:
without an index a point query slows as the table grows, a range query returns its
span, a pool of one runs one query at a time, and a missing index shows as the
database's queue in the run's samples. Needs PostgreSQL (the local server on 5432,
or $HOPBENCH_POSTGRES_URL); elsewhere these tests skip, naming it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hopbench.brokers.postgres import PostgresDb, table_name
from hopbench.config.db import DbWork
from hopbench.config.deployment import DEFAULT_POSTGRES_URL
from hopbench.config.load import load_topology
from hopbench.config.topology import Topology
from hopbench.errors import BrokerUnavailable, ConfigError
from hopbench.services.db import DbClient
from tests.conftest import ROOT, TOPOLOGIES, reap

URL = os.environ.get("HOPBENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
DB_TOPOLOGY = TOPOLOGIES / "db.yaml"


@pytest.fixture(scope="module")
def postgres_url() -> str:
    async def check() -> None:
        connection = await asyncpg.connect(URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(check())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        message = (
            f"PostgreSQL is not reachable at {URL} ({exc}); start one or set HOPBENCH_POSTGRES_URL"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has a PostgreSQL: its absence is a failure there
        pytest.skip(message)
    return URL


def topology(*sets: str) -> Topology:
    return load_topology(DB_TOPOLOGY, list(sets))


async def run_tables(run_id: str) -> list[str]:
    connection = await asyncpg.connect(URL)
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1", f"hopbench_{run_id}%"
        )
    finally:
        await connection.close()
    return [row["tablename"] for row in rows]


# --- validation -----------------------------------------------------------------------


DB = "services.store.work.db"


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("query=lookup", "query: 'lookup' is not one of point, range"),
        ("pool=0", "pool: 0: input should be greater than or equal to 1"),
        ("rows=0", "rows: 0: input should be greater than or equal to 1"),
        ("pool=500", "pool: 500: input should be less than or equal to 100"),
        ("index=maybe", "index: 'maybe': input should be a valid boolean"),
        ("rowz=5", f"rowz is not a field (did you mean 'rows'?); {DB} has query, index, rows, "
                   "pool, span"),
    ],
)  # fmt: skip
def test_a_bad_db_value_names_the_field_and_what_is_allowed(override: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        topology(f"{DB}.{override}")
    assert f"{DB}.{said}" in str(caught.value)


def test_a_range_longer_than_the_table_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        topology("services.store.work.db.query=range", "services.store.work.db.rows=50")
    said = f"{DB}: span 100 is more rows than the table's 50; make span at most rows"
    assert said in str(caught.value)


def test_the_db_work_travels_to_the_children_and_is_described() -> None:
    found = topology("services.store.work.db.index=false", "services.store.work.db.pool=2")
    again = Topology.from_dict(found.to_dict())  # what a child process rebuilds
    assert again.services["store"].db == DbWork("point", False, 10_000, 2, 100)
    assert again.services["gateway"].db is None
    assert found.services["store"].db is not None
    assert found.services["store"].db.describe() == "point query on 10,000 rows, no index, pool 2"


def test_an_unreachable_postgres_is_named_with_the_fix() -> None:
    db = PostgresDb("postgresql://postgres@127.0.0.1:9/postgres", "cafe0001")
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(db.connect(0))
    text = str(caught.value)
    assert text.startswith(
        "PostgreSQL does not answer at postgresql://postgres@127.0.0.1:9/postgres"
    )
    assert "--postgres-url" in text


# --- provisioning and the queries, against the real server ------------------------------


@pytest.mark.integration
def test_the_run_makes_fills_indexes_and_drops_its_tables(postgres_url: str) -> None:
    both = load_topology(
        ROOT / "topologies" / "db.yaml",
        ["services.gateway.work.db.rows=500", "services.gateway.work.db.index=false"],
    )

    async def scenario() -> tuple[dict[str, Any], list[str]]:
        db = PostgresDb(postgres_url, "cafe0002")
        await db.connect(0)
        try:
            await db.provision(both)
            await db.provision(both)  # again (a broker restarted): nothing is made twice
            seen = {}
            connection = await asyncpg.connect(postgres_url)
            try:
                for service, table in db.tables.items():
                    rows = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
                    indexes = await connection.fetchval(
                        "SELECT count(*) FROM pg_indexes WHERE tablename = $1", table
                    )
                    seen[service] = (table, rows, indexes)
            finally:
                await connection.close()
        finally:
            await db.close()
        return seen, await run_tables("cafe0002")

    seen, left = asyncio.run(scenario())
    assert seen == {
        "gateway": (table_name("cafe0002", both, "gateway"), 500, 0),
        "store": (table_name("cafe0002", both, "store"), 10_000, 1),
    }
    assert seen["store"][0] == "hopbench_cafe0002_1_store"
    assert left == []


async def _timed_queries(url: str, work: DbWork, run_id: str, count: int) -> DbClient:
    """count queries one after another, on a table made for them (dropped after)."""
    found = topology(*(f"services.store.work.db.{k}={v}" for k, v in work.to_dict().items()))
    db = PostgresDb(url, run_id)
    await db.connect(0)
    client = DbClient(url, run_id, found, "store", work)
    try:
        await db.provision(found)
        await client.start()
        for _ in range(count):
            await client.query()
    finally:
        await client.close()
        await db.close()
    return client


@pytest.mark.integration
def test_without_an_index_a_point_query_slows_as_the_table_grows(postgres_url: str) -> None:
    async def scenario() -> dict[str, float]:
        p50: dict[str, float] = {}
        for name, work in {
            "scan-small": DbWork("point", False, 1_000, 1, 100),
            "scan-large": DbWork("point", False, 200_000, 1, 100),
            "index-large": DbWork("point", True, 200_000, 1, 100),
        }.items():
            client = await _timed_queries(postgres_url, work, f"cafe01{len(p50)}", 40)
            assert (client.queries, client.errors, client.rows) == (40, 0, 40)
            p50[name] = client.report()["query_ms"]["p50"]
        return p50

    p50 = asyncio.run(scenario())
    # a scan reads every row: 200x the rows costs many times more; the index does not scan
    assert p50["scan-large"] > 3 * p50["scan-small"], p50
    assert p50["scan-large"] > 3 * p50["index-large"], p50


@pytest.mark.integration
def test_a_range_query_returns_its_span_in_order_and_a_point_query_one_row(
    postgres_url: str,
) -> None:
    async def scenario() -> tuple[DbClient, DbClient]:
        ranged = await _timed_queries(
            postgres_url, DbWork("range", True, 5_000, 1, 250), "cafe0201", 20
        )
        point = await _timed_queries(
            postgres_url, DbWork("point", True, 5_000, 1, 250), "cafe0202", 20
        )
        return ranged, point

    ranged, point = asyncio.run(scenario())
    assert (ranged.queries, ranged.rows, ranged.errors) == (20, 20 * 250, 0)
    assert (point.queries, point.rows, point.errors) == (20, 20, 0)


@pytest.mark.integration
def test_a_pool_of_one_runs_one_query_at_a_time(postgres_url: str) -> None:
    """Eight queries at once: with pool 1 the server never runs two of the service's
    queries together and the others wait their turn; with pool 4 it runs several."""
    work_of = {size: DbWork("point", False, 100_000, size, 100) for size in (1, 4)}

    async def scenario(size: int) -> tuple[int, float, float]:
        run_id = f"cafe030{size}"
        found = topology(f"{DB}.pool={size}", f"{DB}.index=false", f"{DB}.rows=100000")
        db = PostgresDb(postgres_url, run_id)
        await db.connect(0)
        client = DbClient(postgres_url, run_id, found, "store", work_of[size])
        most = 0
        try:
            await db.provision(found)
            await client.start()
            burst = asyncio.gather(*(client.query() for _ in range(8)))
            while not burst.done():
                most = max(most, (await db.active()).get("store") or 0)
                await asyncio.sleep(0.002)
            await burst
        finally:
            await client.close()
            await db.close()
        report = client.report()
        return most, report["wait_ms"]["max"], report["query_ms"]["p50"]

    serial_most, serial_wait, serial_query = asyncio.run(scenario(1))
    pooled_most, _, _ = asyncio.run(scenario(4))
    assert serial_most == 1
    assert pooled_most > 1
    # the last of eight waited for the seven before it
    assert serial_wait >= 6 * serial_query * 0.5, (serial_wait, serial_query)


# --- whole runs ----------------------------------------------------------------------


def _hopbench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hopbench", *argv], capture_output=True, text=True, timeout=180
    )


def _db_load(run: dict[str, Any]) -> float:
    """The database's queue over the run: pool waiters and the queries the server ran,
    on average per sample."""
    values = [
        v
        for q in run["samples"]["queues"]
        if q["kind"] in ("db_waiting", "db_active")
        for v in q["values"]
        if v is not None
    ]
    return float(sum(values)) / max(len(run["samples"]["t_s"]), 1)


@pytest.mark.integration
def test_a_missing_index_shows_as_the_database_queue(postgres_url: str, tmp_path: Path) -> None:
    done = _hopbench(
        "run", str(DB_TOPOLOGY), "--set", "services.store.work.db.rows=100000",
        "--set", "services.store.work.db.index=true",
        "--rate", "60", "--duration", "3", "--warmup", "1", "--grace", "2",
        "--postgres-url", postgres_url, "--out", str(tmp_path / "indexed"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scan = _hopbench(
        "run", str(DB_TOPOLOGY), "--set", "services.store.work.db.rows=100000",
        "--set", "services.store.work.db.index=false", "--set", "services.store.work.db.pool=1",
        "--rate", "60", "--duration", "3", "--warmup", "1", "--grace", "2",
        "--postgres-url", postgres_url, "--out", str(tmp_path / "scan"),
    )  # fmt: skip
    # one connection for a scan of ~17 ms at 60/s: the pool is the queue (it may fall
    # behind, exit 1, and say so)
    assert scan.returncode in (0, 1), scan.stderr
    assert "Traceback" not in scan.stderr
    indexed = json.loads((tmp_path / "indexed" / "results.json").read_text())["runs"][0]
    scanned = json.loads((tmp_path / "scan" / "results.json").read_text())["runs"][0]
    for run in (indexed, scanned):
        kinds = {q["kind"]: q for q in run["samples"]["queues"]}
        assert kinds["db_waiting"]["holder"] == "store/0"
        assert kinds["db_active"]["name"].startswith("postgresql hopbench_")
        store = next(p for p in run["processes"] if p["name"] == "store/0")
        assert store["db"]["queries"] > 0
        assert run["brokers"]["postgresql"]["where"].startswith("PostgreSQL ")
        assert asyncio.run(run_tables(run["run_id"])) == []  # dropped after the run
    assert _db_load(scanned) > _db_load(indexed), (_db_load(scanned), _db_load(indexed))
    assert "database queries (ms)" in done.stdout
    assert "point of 100,000 rows, indexed, pool 4" in done.stdout


@pytest.mark.integration
def test_a_run_stopped_by_sigterm_drops_its_tables(postgres_url: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "hopbench", "run", str(DB_TOPOLOGY), "--rate", "20",
            "--duration", "30", "--warmup", "0", "--postgres-url", postgres_url,
            "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip().startswith("load:"):
                break
        run_dir = next((tmp_path / "runs").iterdir())
        run_id = run_dir.name.rsplit("-", 1)[-1]
        assert asyncio.run(run_tables(run_id)) != []  # made before the load
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert "Traceback" not in stderr
    assert asyncio.run(run_tables(run_id)) == []


def test_the_db_suite_loads_and_compares_its_levers() -> None:
    from hopbench.config.suite import load_suite

    _, cells, _ = load_suite(ROOT / "suites" / "levers" / "db.yaml")
    works = {c.variant: c.topology.services["store"].db for c in cells}
    assert all(work is not None for work in works.values())
    assert {w.index for w in works.values() if w is not None} == {True, False}
    assert {w.pool for w in works.values() if w is not None} >= {1, 8}
    assert {w.query for w in works.values() if w is not None} == {"point", "range"}
    assert statistics.median(c.load.duration_s for c in cells) <= 5


# --- compose and Kubernetes ----------------------------------------------------------


def test_compose_and_k8s_run_a_postgres_for_a_db_topology_with_its_password_secret(
    tmp_path: Path,
) -> None:
    import kubernetes_validate
    import yaml

    from tests.test_render import K8S_VERSION, documents, render

    text, _ = render("compose", str(DB_TOPOLOGY), out=str(tmp_path / "compose.yml"))
    services = yaml.safe_load(text)["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${HOPBENCH_POSTGRES_PASSWORD")
    assert "healthcheck" not in postgres  # the orchestrator and its agents wait for it
    assert "--brokers-wait" in services["hopbench"]["command"]  # waits for Postgres itself
    for name in ("hopbench", "store-0", "gateway-0"):
        url = services[name]["environment"]["HOPBENCH_POSTGRES_URL"]
        assert url.startswith("postgresql://postgres:${HOPBENCH_POSTGRES_PASSWORD")
        assert url.endswith("@postgres:5432/postgres")
    chain, _ = render("compose", str(TOPOLOGIES / "chain.yaml"), out=str(tmp_path / "c.yml"))
    assert "postgres" not in chain  # only a topology that queries runs one

    manifests, _ = render("k8s", str(DB_TOPOLOGY), out=str(tmp_path / "k.yaml"))
    docs = documents(manifests)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["postgres-url"].endswith("@postgres:5432/postgres")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "postgres"), ("Service", "postgres")} <= names
