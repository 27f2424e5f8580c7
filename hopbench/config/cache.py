"""The cache lever of a service's work: ``work: {cache: {...}}`` in a topology.

Before its own work, a replica looks up one key, drawn from a Zipf distribution over
``keys`` keys (exponent ``skew``; 0 is uniform), in its cache: ``local``, a dict in the
replica's own memory (exclusive: each replica warms its own), or ``redis``, one Redis
shared by every replica of the service (a round trip on every lookup, but a key one
replica loaded is a hit for all). A miss costs ``miss`` (the source's work: CPU and an
awaited delay, as a database call would) and stores the value for ``ttl_ms``. The
source's value of each key changes ``update_rate`` times a second, so a long TTL serves
more hits and older, more often superseded values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CacheStore = Literal["local", "redis"]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_KEYS = 1_000_000  # a local cache of every key stays in memory; the sampler's table too


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MissSpec(_Strict):
    """The work a miss costs: the source's answer (e.g. a database call)."""

    cpu_us: int = Field(0, ge=0, le=10_000_000, description="busy CPU per miss, µs")
    io_ms: float = Field(5.0, ge=0, le=60_000, description="awaited delay per miss, ms")


class CacheSpec(_Strict):
    store: CacheStore = Field(description="local (per replica) or redis (shared)")
    ttl_ms: float = Field(1000.0, gt=0, le=86_400_000, description="how long a value is served")
    keys: int = Field(1000, ge=1, le=MAX_KEYS, description="distinct keys looked up")
    skew: float = Field(1.0, ge=0, le=10, description="Zipf exponent of key popularity")
    miss: MissSpec = MissSpec()
    update_rate: float = Field(
        0.0, ge=0, le=1_000_000, description="changes of each key's source value per second"
    )
    connections: int = Field(
        32,
        ge=1,
        le=10_000,
        description="redis: pooled connections per replica; more lookups wait",
    )
