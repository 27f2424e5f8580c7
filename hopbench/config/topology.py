"""Topologies: the file format (pydantic), its checks, and the resolved graph.

A topology names services and the edges between them. The load generator is the
reserved source ``loadgen``; the target of its one edge is the entry service.

Completion — where latency is recorded — follows from the graph, never from the
transport. A message that arrives over an asynchronous edge (or is sent by the load
generator) roots a *call tree* of request-reply edges. The root records a completion
when its calls return if the tree made at least one call (a round trip: in a hybrid,
the user-facing latency) or if nothing goes on asynchronously from it (a sink).
Every asynchronous edge out of the tree roots a new tree at its target, which
completes by the same rule. A *route* is the tuple of edge indices by which a message
reached the service that records it; one sent message completes once per route.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from hopbench.config.cache import CacheSpec
from hopbench.config.db import DbSpec, DbWork
from hopbench.config.locking import LockSpec
from hopbench.config.settings import (
    EDGE_SETTINGS,
    SETTING_MODES,
    Settings,
    refusal,
    unsupported_lever,
)
from hopbench.config.yamlsource import Located
from hopbench.errors import ConfigError

LOADGEN = "loadgen"
Mode = Literal["http", "grpc", "kafka", "rabbitmq"]
Pattern = Literal["request-reply", "fire-and-forget", "publish-subscribe"]
MODES: tuple[Mode, ...] = ("http", "grpc", "kafka", "rabbitmq")
PATTERNS: tuple[Pattern, ...] = ("request-reply", "fire-and-forget", "publish-subscribe")

# A pattern-less edge takes its mode's natural pattern.
NATURAL_PATTERN: dict[str, Pattern] = {
    "http": "request-reply",
    "grpc": "request-reply",
    "kafka": "publish-subscribe",
    "rabbitmq": "fire-and-forget",
}
# The cells of the pattern x mode matrix that cannot be, and why.
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("http", "publish-subscribe"): "HTTP delivers each request to one server; for one-to-many "
    "use kafka or rabbitmq publish-subscribe, or one fire-and-forget HTTP edge per subscriber",
    ("grpc", "publish-subscribe"): "a gRPC call reaches one server; for one-to-many use kafka "
    "or rabbitmq publish-subscribe, or one fire-and-forget gRPC edge per subscriber",
}
# What an edge's pattern becomes when --mode or --set moves it to a mode that cannot
# carry it: each subscriber is its own edge, so each still gets every message.
FALLBACK_PATTERN: dict[str, Pattern] = {"publish-subscribe": "fire-and-forget"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkSpec(_Strict):
    cpu_us: int = Field(0, ge=0, le=10_000_000, description="busy CPU work per message, µs")
    io_ms: float = Field(0.0, ge=0, le=60_000, description="awaited delay per message, ms")
    reply_bytes: int = Field(100, ge=0, le=16 * 1024 * 1024, description="reply payload size")
    cache: CacheSpec | None = None  # a lookup before the work (hopbench.config.cache)
    db: DbSpec | None = Field(None, description="one PostgreSQL query per message")
    # the CPU work on a pool of this many threads per replica (None: on the event loop)
    cpu_threads: int | None = Field(None, ge=1, le=1024)
    lock: LockSpec | None = None  # a lock on the key each message touches (config.locking)

    @pydantic.model_validator(mode="after")
    def _a_pool_needs_cpu_work(self) -> WorkSpec:
        if self.cpu_threads is not None and self.cpu_us == 0:
            raise PydanticCustomError(
                "cpu_threads",
                "cpu_threads puts the CPU work on a thread pool, and cpu_us is 0: "
                "set cpu_us, or leave cpu_threads out",
            )
        return self


class GatherSpec(_Strict):
    """How a service with several request-reply out-edges waits for their replies."""

    policy: Literal["all", "first", "quorum"] = "all"
    quorum: int | None = Field(None, ge=1, description="replies needed, with policy quorum")
    timeout_ms: float | None = Field(None, gt=0, description="per call; default: the run's")


class ServiceSpec(_Strict):
    replicas: int = Field(1, ge=1, le=64)
    # the thread-pool-size lever: messages one replica handles at once; the others wait
    # for a free handler (measured as wait). None: HTTP and gRPC unlimited, each broker
    # in-edge its prefetch.
    concurrency: int | None = Field(None, le=100_000)
    work: WorkSpec = WorkSpec()
    gather: GatherSpec = GatherSpec()

    @pydantic.field_validator("concurrency")
    @classmethod
    def _a_handler_at_least(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise PydanticCustomError(
                "concurrency",
                "{value}: a replica needs at least 1 handler; leave concurrency out for no limit",
                {"value": value},
            )
        return value


class EdgeSpec(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    source: str = Field(alias="from")
    to: str
    mode: Mode
    pattern: Pattern | None = None
    # this edge's own transport settings (the run's for everything not named here)
    settings: dict[str, Any] = {}


class TopologySpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    services: dict[str, ServiceSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Service:
    name: str
    replicas: int
    cpu_us: int
    io_ms: float
    reply_bytes: int
    gather_policy: str = "all"
    gather_needed: int | None = None  # replies needed; None: every call's
    gather_timeout_s: float | None = None
    concurrency: int | None = None  # messages handled at once per replica; None: no limit
    cache: CacheSpec | None = None
    db: DbWork | None = None  # one query per message (hopbench.config.db)
    cpu_threads: int | None = None  # the CPU work on a pool of this many threads; None: the loop
    lock: LockSpec | None = None


@dataclass(frozen=True)
class Edge:
    index: int
    source: str
    target: str
    mode: str
    pattern: str
    settings: tuple[tuple[str, Any], ...] = ()  # overrides of the run's settings

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"

    @property
    def is_sync(self) -> bool:
        return self.pattern == "request-reply"


Route = tuple[int, ...]


@dataclass(frozen=True)
class Topology:
    name: str
    services: dict[str, Service]
    edges: tuple[Edge, ...]
    source: str = "<memory>"
    # what loading it changed beyond what was asked (hopbench.config.overrides)
    notes: tuple[str, ...] = ()

    # --- graph queries ------------------------------------------------------------
    def out_edges(self, service: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.source == service)

    def in_edges(self, service: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.target == service)

    @property
    def entry_edge(self) -> Edge:
        return self.out_edges(LOADGEN)[0]

    @cached_property
    def _continues(self) -> dict[str, bool]:
        """Does a message in this service's call tree go on asynchronously?"""
        memo: dict[str, bool] = {}

        def visit(name: str) -> bool:
            if name not in memo:
                outs = self.out_edges(name)
                memo[name] = any(not e.is_sync for e in outs) or any(
                    visit(e.target) for e in outs if e.is_sync
                )
            return memo[name]

        for name in (LOADGEN, *self.services):
            visit(name)
        return memo

    def records_completion(self, service: str) -> bool:
        """Whether a message rooted at service completes there (see module docstring):
        its call tree made a round trip, or nothing goes on asynchronously from it."""
        has_calls = any(e.is_sync for e in self.out_edges(service))
        return has_calls or not self._continues[service]

    def expected_routes(self) -> list[Route]:
        """Every route on which one sent message is expected to complete once."""
        routes: list[Route] = []

        def root(name: str, path: Route) -> None:
            if self.records_completion(name):
                routes.append(path)
            for node, node_path in self._call_tree(name, path):
                for edge in self.out_edges(node):
                    if not edge.is_sync:
                        root(edge.target, (*node_path, edge.index))

        root(LOADGEN, ())
        return routes

    def _call_tree(self, name: str, path: Route) -> Iterator[tuple[str, Route]]:
        yield name, path
        for edge in self.out_edges(name):
            if edge.is_sync:
                yield from self._call_tree(edge.target, (*path, edge.index))

    @cached_property
    def callers(self) -> dict[int, str]:
        """Edge index -> the service (or load generator) that sends on it."""
        return {e.index: e.source for e in self.edges}

    @cached_property
    def request_reply(self) -> frozenset[int]:
        """The indices of the request-reply edges."""
        return frozenset(e.index for e in self.edges if e.is_sync)

    def hop_services(self, route: Route) -> list[str]:
        """The services a message recorded on this route passed through, in order.

        On a request-reply route the callees' hops come back in the reply, so the
        recorder sees the whole call tree: depth first, in edge order.
        """
        if not route:
            return [name for name, _ in self._call_tree(LOADGEN, ())][1:]
        return [self.edges[i].target for i in route]

    def route_label(self, route: Route) -> str:
        """'loadgen>gateway>worker': the services a message passed to reach its recorder."""
        if not route:
            return f"{LOADGEN} (reply)"
        names = [LOADGEN] + [self.edges[i].target for i in route]
        return ">".join(names)

    def route_measures(self, route: Route) -> str:
        """What a route's latency is: a round trip as the caller (the load generator)
        sees it, or a one-way delivery to the service that records it."""
        if not route:
            return "round trip"
        return f"one-way to {self.edges[route[-1]].target}"

    def check_settings(self, settings: Settings) -> None:
        """ConfigError when a run's settings ask an edge for what its mode cannot carry."""
        for edge in self.edges:
            refused = refusal(edge.mode, settings.with_overrides(edge.settings))
            if refused is not None:
                raise ConfigError(
                    f"{self.source}: edge {edge.name}: {refused} (set it on the other "
                    "edges alone, in their settings)"
                )

    @property
    def modes(self) -> set[str]:
        return {e.mode for e in self.edges}

    @property
    def mode_label(self) -> str:
        modes = self.modes
        return next(iter(modes)) if len(modes) == 1 else "mixed"

    # --- (de)serialization for child processes -----------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "services": {
                s.name: {
                    "replicas": s.replicas,
                    "concurrency": s.concurrency,
                    "work": _work_dict(s),
                    "gather": _gather_dict(s),
                }
                for s in self.services.values()
            },
            "edges": [
                {
                    "from": e.source,
                    "to": e.target,
                    "mode": e.mode,
                    "pattern": e.pattern,
                    "settings": dict(e.settings),
                }
                for e in self.edges
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        fields = {k: v for k, v in data.items() if k != "source"}
        return resolve(TopologySpec.model_validate(fields), source=data.get("source", "<memory>"))


def _edge_settings(e: EdgeSpec, i: int, fail: Any) -> tuple[tuple[str, Any], ...]:
    """Validate an edge's settings against the run settings' own model."""
    for key in e.settings:
        if key not in EDGE_SETTINGS:
            known = ", ".join(sorted(EDGE_SETTINGS))
            raise fail(("edges", i, "settings", key), f"is not a per-edge setting; known: {known}")
        if SETTING_MODES.get(key, e.mode) != e.mode:
            raise fail(
                ("edges", i, "settings", key),
                f"chooses a client of {SETTING_MODES[key]} edges, and this edge is {e.mode}: "
                f"remove it, or make the edge {SETTING_MODES[key]}",
            )
    try:
        checked = Settings.model_validate(e.settings)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise fail(("edges", i, "settings", *err["loc"]), err["msg"]) from None
    refused = unsupported_lever(e.mode, checked)
    if refused is not None:
        name, why = refused
        value = str(getattr(checked, name)).lower()
        raise fail(("edges", i, "settings", name), f"{name}: {value} on a {e.mode} edge: {why}")
    refused_format = refusal(e.mode, checked)
    if refused_format is not None:
        raise fail(("edges", i, "settings"), refused_format)
    return tuple(sorted((k, getattr(checked, k)) for k in e.settings))


def _work_dict(s: Service) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_us": s.cpu_us, "io_ms": s.io_ms, "reply_bytes": s.reply_bytes}
    if s.cache is not None:
        out["cache"] = s.cache.model_dump()
    if s.db is not None:
        out["db"] = s.db.to_dict()
    if s.cpu_threads is not None:
        out["cpu_threads"] = s.cpu_threads
    if s.lock is not None:
        out["lock"] = s.lock.model_dump()
    return out


def _gather_dict(s: Service) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": s.gather_policy}
    if s.gather_policy == "quorum":
        out["quorum"] = s.gather_needed
    if s.gather_timeout_s is not None:
        out["timeout_ms"] = s.gather_timeout_s * 1000
    return out


def resolve(spec: TopologySpec, source: str, located: Located | None = None) -> Topology:
    """Check the graph and build the resolved topology (errors name file and line)."""

    def fail(path: tuple[str | int, ...], message: str) -> ConfigError:
        if located is None:
            return ConfigError(f"{source}: {'.'.join(map(str, path))}: {message}")
        return located.error(path, message)

    if LOADGEN in spec.services:
        raise fail(("services", LOADGEN), f"'{LOADGEN}' is reserved for the load generator")
    known = set(spec.services)
    edges: list[Edge] = []
    seen: dict[tuple[str, str], int] = {}
    for i, e in enumerate(spec.edges):
        if e.source != LOADGEN and e.source not in known:
            raise fail(("edges", i, "from"), _unknown(e.source, known, with_loadgen=True))
        if e.to not in known:
            raise fail(("edges", i, "to"), _unknown(e.to, known, with_loadgen=False))
        if e.source == e.to:
            raise fail(("edges", i, "to"), f"an edge from '{e.source}' to itself is a cycle")
        if (e.source, e.to) in seen:
            raise fail(
                ("edges", i),
                f"duplicate edge {e.source}->{e.to} (first at edges[{seen[e.source, e.to]}])",
            )
        seen[e.source, e.to] = i
        pattern = e.pattern or NATURAL_PATTERN[e.mode]
        if (e.mode, pattern) in UNSUPPORTED:
            raise fail(
                ("edges", i, "pattern"),
                f"{pattern} over {e.mode} cannot be: {UNSUPPORTED[e.mode, pattern]}",
            )
        overrides = _edge_settings(e, i, fail)
        edges.append(Edge(i, e.source, e.to, e.mode, pattern, overrides))

    entries = [e for e in edges if e.source == LOADGEN]
    if len(entries) != 1:
        where = ("edges", entries[1].index) if entries else ("edges",)
        raise fail(
            where,
            f"a topology has exactly one edge from '{LOADGEN}' (the entry); found {len(entries)}",
        )
    _check_acyclic_and_reachable(edges, known, fail)
    _check_tls_agrees(edges, fail)
    services = {name: _service(name, s, edges, fail) for name, s in spec.services.items()}
    notes = tuple(located.notes) if located is not None else ()
    return Topology(spec.name, services, tuple(edges), source, notes)


def _service(name: str, spec: ServiceSpec, edges: list[Edge], fail: Any) -> Service:
    gather = spec.gather
    calls = sum(1 for e in edges if e.source == name and e.is_sync)
    needed: int | None = None
    if gather.policy == "first":
        needed = 1
    elif gather.policy == "quorum":
        if gather.quorum is None or not 1 <= gather.quorum <= calls:
            raise fail(
                ("services", name, "gather", "quorum"),
                f"policy quorum needs a quorum between 1 and its {calls} request-reply edges",
            )
        needed = gather.quorum
    timeout = gather.timeout_ms / 1000 if gather.timeout_ms is not None else None
    w = spec.work
    db = DbWork.of(w.db) if w.db is not None else None
    return Service(name, spec.replicas, w.cpu_us, w.io_ms, w.reply_bytes,
                   gather.policy, needed, timeout, spec.concurrency, w.cache, db,
                   w.cpu_threads, w.lock)  # fmt: skip


def _unknown(name: str, known: set[str], *, with_loadgen: bool) -> str:
    allowed = sorted(known | ({LOADGEN} if with_loadgen else set()))
    return f"'{name}' is not a service of this topology; known: {', '.join(allowed)}"


def _check_tls_agrees(edges: list[Edge], fail: Any) -> None:
    """A replica has one server per mode: its in-edges of that mode agree on tls."""
    first: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        key = (edge.target, edge.mode)
        other = first.setdefault(key, edge)
        mine, theirs = dict(edge.settings).get("tls"), dict(other.settings).get("tls")
        if mine != theirs:
            raise fail(
                ("edges", edge.index, "settings", "tls"),
                f"edges {other.name} and {edge.name} reach one {edge.mode} server of "
                f"'{edge.target}' and must agree on tls: set it on both, the same, or on neither",
            )


def _check_acyclic_and_reachable(edges: list[Edge], known: set[str], fail: Any) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str) -> None:
        state[name] = 1
        for e in edges:
            if e.source != name:
                continue
            if state.get(e.target) == 1:
                raise fail(
                    ("edges", e.index),
                    f"edge {e.source}->{e.target} closes a cycle; a topology must be acyclic",
                )
            if e.target not in state:
                visit(e.target)
        state[name] = 2

    visit(LOADGEN)
    unreachable = sorted(known - set(state))
    if unreachable:
        raise fail(
            ("services", unreachable[0]),
            f"service '{unreachable[0]}' is not reached from '{LOADGEN}' by any edge",
        )
