"""The cache lever (work.cache): its checks, its sampler and store, and the directions
that are physical, measured on a real Redis (127.0.0.1:6379, or $HOPBENCH_REDIS_URL):
a shared cache adds a Redis round trip to a hit; more skew, more hits; a longer TTL,
more hits and older values; the replicas of a service share what a Redis cache loaded.
The whole-topology runs use the in-process harness (in-memory transport, real Redis);
the suite runs once through `hopbench compare` at a small scale."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from hopbench import clock
from hopbench.config.cache import DEFAULT_REDIS_URL, CacheSpec
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.suite import load_suite
from hopbench.errors import ConfigError
from hopbench.measure.cachestats import CacheStats
from hopbench.render.common import RenderRequest
from hopbench.render.compose import render_compose
from hopbench.render.k8s import render_k8s
from hopbench.results.caches import cache_results
from hopbench.results.schema import CacheResult, RunResult
from hopbench.services.cache import LocalStore, ServiceCache, ZipfKeys
from tests.conftest import ROOT, TOPOLOGIES, reap
from tests.inprocess import run_in_process

REDIS_URL = os.environ.get("HOPBENCH_REDIS_URL", DEFAULT_REDIS_URL)
CACHED = TOPOLOGIES / "cached.yaml"
SUITE = ROOT / "suites" / "levers" / "cache.yaml"


@pytest.fixture(scope="module")
def redis_server() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"needs a Redis server at {REDIS_URL} (set HOPBENCH_REDIS_URL): {exc}")
    finally:
        client.close()
    return REDIS_URL


def _leftover_keys() -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match="hopbench:*"))
    finally:
        client.close()


# ---- checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("store=memcached", "'memcached' is not one of local, redis"),
        ("ttl_ms=0", "ttl_ms: 0: input should be greater than 0"),
        ("keys=0", "keys: 0: input should be greater than or equal to 1"),
        ("keys=2000000", "keys: 2000000: input should be less than or equal to 1000000"),
        ("skew=-1", "skew: -1: input should be greater than or equal to 0"),
        ("update_rate=-2", "update_rate: -2: input should be greater than or equal to 0"),
        ("miss.io_ms=-1", "miss.io_ms: -1: input should be greater than or equal to 0"),
        ("kyes=5", "cache.kyes is not a field (did you mean 'keys'?)"),
    ],
)
def test_bad_cache_settings_name_the_field_and_what_is_allowed(change: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_topology(CACHED, [f"services.worker.work.cache.{change}"])
    assert expected in str(caught.value)
    assert "services.worker.work.cache" in str(caught.value)


def test_a_cache_needs_its_store() -> None:
    with pytest.raises(ConfigError, match=r"work\.cache\.store: is required"):
        load_topology(TOPOLOGIES / "chain.yaml", ["services.worker.work.cache.ttl_ms=5"])


def test_the_cache_goes_with_the_topology_to_the_processes() -> None:
    topology = load_topology(CACHED, ["services.worker.work.cache.store=redis"])
    again = type(topology).from_dict(topology.to_dict())
    cache = again.services["worker"].cache
    assert cache == topology.services["worker"].cache
    assert cache is not None
    assert (cache.store, cache.miss.io_ms) == ("redis", 5)
    assert again.services["gateway"].cache is None


# ---- the sampler, the store, the counts --------------------------------------------


def test_zipf_keys_follow_their_exact_distribution() -> None:
    keys = ZipfKeys(3, 1.0, random.Random(1))
    counts = Counter(keys.draw() for _ in range(30_000))
    # P(rank r) = r^-1 / (1 + 1/2 + 1/3): 6/11, 3/11, 2/11
    for key, share in ((0, 6 / 11), (1, 3 / 11), (2, 2 / 11)):
        assert counts[key] / 30_000 == pytest.approx(share, abs=0.015)
    flat = ZipfKeys(4, 0.0, random.Random(2))
    uniform = Counter(flat.draw() for _ in range(20_000))
    assert sorted(uniform) == [0, 1, 2, 3]
    assert max(uniform.values()) / min(uniform.values()) < 1.15


def test_a_local_value_expires_after_its_ttl() -> None:
    loaded = clock.now_ns()

    async def go() -> tuple[int | None, int | None]:
        store = LocalStore(ttl_ms=30)
        await store.put(7, loaded)
        first = await store.get(7)
        await asyncio.sleep(0.05)
        return first, await store.get(7)

    assert asyncio.run(go()) == (loaded, None)


def test_a_value_is_superseded_once_its_source_changed() -> None:
    spec = CacheSpec(store="local", update_rate=10)  # each key changes every 100 ms
    cache = ServiceCache(spec, LocalStore(1000), "seed")
    second = 1_000_000_000
    changes = [t for t in range(0, second, 1_000_000) if cache.superseded(5, t, t + 1_000_000)]
    assert len(changes) == 10  # one change per 100 ms: each crossed by one 1 ms step
    assert not ServiceCache(CacheSpec(store="local"), LocalStore(1), "s").superseded(5, 0, second)


def test_replicas_merge_by_counts_and_histograms() -> None:
    topology = load_topology(CACHED)
    one, two = CacheStats(), CacheStats()
    one.hit(2_000, 10_000_000, stale=True)
    one.miss(5_000_000)
    two.hit(4_000, 30_000_000, stale=False)
    rows = cache_results(topology, {"worker/0": one.to_json(), "worker/1": two.to_json()})
    assert [r.service for r in rows] == ["worker"]
    row = rows[0]
    assert (row.lookups, row.hits, row.misses, row.stale) == (3, 2, 1, 1)
    assert row.hit_ratio == pytest.approx(2 / 3, abs=1e-4)
    assert row.stale_ratio == 0.5
    assert row.hit_us.count == 2
    assert row.age_us.max == pytest.approx(30_000, rel=0.01)


# ---- directions, on a real Redis ---------------------------------------------------

LOAD = LoadSpec(rate=200, duration_s=1.5, warmup_s=0.5, payload_bytes=64)
SHORT = LoadSpec(rate=100, duration_s=0.3, warmup_s=0, payload_bytes=64)


def _cache_run(sets: list[str]) -> CacheResult:
    topology = load_topology(CACHED, sets)
    result: RunResult = asyncio.run(run_in_process(topology, LOAD, settle_s=5))
    assert (result.errors, result.lost) == (0, 0)
    [cache] = result.caches
    assert cache.lookups == result.completed
    return cache


def test_a_shared_cache_adds_a_redis_round_trip_to_a_hit(redis_server: str) -> None:
    # few keys, a long TTL: nearly every lookup hits, in either store
    common = ["services.worker.work.cache.keys=20", "services.worker.work.cache.ttl_ms=60000"]
    local = _cache_run([*common, "services.worker.work.cache.store=local"])
    shared = _cache_run([*common, "services.worker.work.cache.store=redis"])
    assert local.hits > 0.8 * local.lookups
    assert shared.hits > 0.8 * shared.lookups
    # a dict lookup takes a few µs; a Redis GET is a round trip over loopback
    assert shared.hit_us.p50 > 3 * local.hit_us.p50
    assert shared.hit_us.p50 >= 20
    assert _leftover_keys() == []  # each run's keys are gone when its replicas close


def test_replicas_share_what_a_redis_cache_loaded(redis_server: str) -> None:
    # many keys, mild skew: what one replica loaded is often what the other needs next
    common = ["services.worker.work.cache.keys=2000", "services.worker.work.cache.skew=0.6"]
    local = _cache_run([*common, "services.worker.work.cache.store=local"])
    shared = _cache_run([*common, "services.worker.work.cache.store=redis"])
    assert shared.hit_ratio > local.hit_ratio


def test_more_skew_means_more_hits() -> None:
    uniform = _cache_run(["services.worker.work.cache.skew=0"])
    skewed = _cache_run(["services.worker.work.cache.skew=1.5"])
    assert skewed.hit_ratio > uniform.hit_ratio + 0.2


def test_a_longer_ttl_serves_more_hits_and_older_values() -> None:
    short = _cache_run(["services.worker.work.cache.ttl_ms=50"])
    long = _cache_run(["services.worker.work.cache.ttl_ms=5000"])
    assert long.hit_ratio > short.hit_ratio
    assert long.age_us.p50 > short.age_us.p50
    assert short.age_us.max <= 50_000 * 1.5  # within its TTL (and a lookup's own time)
    assert long.stale_ratio > short.stale_ratio  # each key changes every 2 s


def test_a_missing_redis_fails_the_run_in_words(tmp_path: Path) -> None:
    """The service that needs it says where it looked and what to do; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopbench", "run", str(CACHED), "--rate", "20",
         "--duration", "0.5", "--warmup", "0", "--brokers-wait", "0",
         "--set", "services.worker.work.cache.store=redis",
         "--redis-url", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        reap(proc)
    assert proc.returncode != 0
    assert "no Redis at redis://127.0.0.1:1/0" in err
    assert "pass --redis-url, or use store: local" in err
    assert "Traceback" not in err


# ---- the suite, and the renders -----------------------------------------------------


def test_the_suite_compares_the_stores_ttls_and_skews() -> None:
    _, cells, _ = load_suite(SUITE)
    variants = {c.variant: c.topology.services["worker"].cache for c in cells}
    assert set(variants) == {
        "local", "redis", "local-ttl-100ms", "local-ttl-10s", "local-uniform", "local-skew-1.5"
    }  # fmt: skip
    stores = {name: (c.store, c.ttl_ms) if c else None for name, c in variants.items()}
    assert stores["redis"] == ("redis", 1000)
    assert stores["local-ttl-10s"] == ("local", 10_000)


def test_the_suite_runs_at_a_small_scale(redis_server: str, tmp_path: Path) -> None:
    """`hopbench compare` with the suite's first two cells (local, redis), shortened."""
    text = SUITE.read_text().replace("../../topologies/cached.yaml", str(CACHED))
    text = text.replace("{duration_s: 5, warmup_s: 2}", "{duration_s: 1.5, warmup_s: 0.5}")
    text = "\n".join(line for line in text.splitlines() if "local-" not in line)
    suite = tmp_path / "cache.yaml"
    suite.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopbench", "compare", str(suite), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        reap(proc)
    assert proc.returncode == 0, err
    assert "caches (measured window" in out
    runs: list[dict[str, Any]] = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    caches = {r["variant"]: r["caches"][0] for r in runs}
    assert set(caches) == {"local", "redis"}
    assert caches["redis"]["hit_us"]["p50"] > caches["local"]["hit_us"]["p50"]
    assert _leftover_keys() == []


def test_renders_run_redis_beside_a_shared_cache(tmp_path: Path) -> None:
    shared = load_topology(CACHED, ["services.worker.work.cache.store=redis"])
    request = RenderRequest(shared, CACHED)
    compose = render_compose(request, tmp_path / "docker-compose.yml", "hopbench render")
    assert "image: redis:" in compose
    assert "--redis-url redis://redis:6379/0" in compose
    k8s = render_k8s(request, 1, "hopbench render")
    assert "image: redis:" in k8s
    assert "redis://redis:6379/0" in k8s
    local = RenderRequest(load_topology(CACHED), CACHED)
    assert "redis" not in render_compose(local, tmp_path / "c.yml", "hopbench render")


def test_no_cache_no_caches_in_the_results() -> None:
    result = asyncio.run(
        run_in_process(load_topology(TOPOLOGIES / "chain.yaml"), SHORT, settle_s=5)
    )
    assert result.caches == []
