"""The connection levers: keepalive, pool and channel sizes, TLS with and without
session resumption (HTTP and gRPC), AMQPS to a RabbitMQ node with a TLS listener.

Validation first (fast), then the levers measured small: a new connection per
request shows in the processes' counts, and a full TLS handshake costs more than a
resumed one (CPU of client and server in one process: a loaded machine stretches
wall-clock latency, not the work a handshake is).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopbench import clock
from hopbench.config.deployment import Deployment
from hopbench.config.flags import check_levers, settings_from
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.settings import Settings
from hopbench.config.suite import load_suite
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.results.schema import RunResult
from hopbench.run.provision import allocate_endpoints
from hopbench.run.tls import make_tls
from hopbench.transports import transport_class
from hopbench.transports.base import Transport, connection_counts
from hopbench.transports.context import TransportContext
from tests.inprocess import Brokers, run_in_process
from tests.rabbitnode import RabbitNode, rabbit_node

ROOT = Path(__file__).resolve().parent.parent
LEVERS = ROOT / "suites" / "levers"

TOPOLOGY = """\
name: conns
services:
  front: {}
  back: {}
edges:
  - {from: loadgen, to: front, mode: http}
  - {from: front, to: back, mode: MODE, settings: {SETTINGS}}
"""


def topology_with(tmp_path: Path, mode: str, settings: str) -> Path:
    path = tmp_path / "conns.yaml"
    path.write_text(TOPOLOGY.replace("MODE", mode).replace("SETTINGS", settings))
    return path


# ---- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "settings", "expected"),
    [
        ("kafka", "tls: true", ["edges[1].settings.tls", "not supported by Tansu"]),
        ("rabbitmq", "tls: true", ["edges[1].settings.tls", "--rabbitmq-url", "amqps://"]),
        ("kafka", "keepalive: false", ["keepalive: false on a kafka edge", "http and grpc"]),
        ("rabbitmq", "keepalive: false", ["keepalive: false on a rabbitmq edge"]),
        ("http", "keepalive: maybe", ["edges[1].settings.keepalive", "boolean"]),
        ("grpc", "tls_resumption: 2", ["edges[1].settings.tls_resumption", "boolean"]),
    ],
)
def test_a_lever_a_mode_cannot_carry_is_refused_with_a_sentence(
    tmp_path: Path, mode: str, settings: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_topology(topology_with(tmp_path, mode, settings))
    for part in expected:
        assert part in str(caught.value)


def test_the_in_edges_of_one_server_agree_on_tls(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\nservices: {a: {}, b: {}, c: {}}\nedges:\n"
        "  - {from: loadgen, to: a, mode: http}\n"
        "  - {from: a, to: c, mode: grpc, settings: {tls: true}}\n"
        "  - {from: a, to: b, mode: http}\n"
        "  - {from: b, to: c, mode: grpc}\n"
    )
    with pytest.raises(ConfigError, match=r"edges\[3\].settings.tls.*must agree on tls"):
        load_topology(path)


def test_run_wide_settings_are_checked_against_every_edge(tmp_path: Path) -> None:
    topology = load_topology(topology_with(tmp_path, "kafka", ""))
    with pytest.raises(ConfigError, match="--setting tls=true: edge front->back is kafka"):
        check_levers(topology, settings_from(["tls=true"]))
    check_levers(topology, settings_from(["keepalive=true"]))  # what every mode does
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: s\ntopology: {topology_with(tmp_path, 'rabbitmq', '')}\n"
        "settings: {tls: true}\nmatrix: {rates: [10]}\n"
    )
    with pytest.raises(ConfigError, match=r"suite\.yaml.*settings\.tls.*amqps"):
        load_suite(suite)


def test_the_lever_suites_load() -> None:
    for name, variants in {"connections": 6, "tls": 7}.items():
        _, cells, _ = load_suite(LEVERS / f"{name}.yaml")
        assert len({c.variant for c in cells}) == variants


# ---- the levers, measured small -----------------------------------------------------


async def _pair(mode: str, settings: Settings) -> tuple[Transport, Transport]:
    topology = Topology.from_dict(
        {
            "name": "t",
            "services": {"a": {}},
            "edges": [{"from": "loadgen", "to": "a", "mode": mode}],
        }
    )
    endpoints = allocate_endpoints(topology)
    tls = make_tls(endpoints)
    edge = topology.edges[0]
    server = transport_class(mode)(
        TransportContext("r", "a", 0, topology, settings, endpoints, tls=tls)
    )

    async def echo(_edge: object, env: Envelope, _t: int) -> Envelope:
        return env  # a reply the client's screening takes (hopbench.transports.admission)

    server.serve(edge, echo)
    await server.start()
    client = transport_class(mode)(
        TransportContext("r", "loadgen", 0, topology, settings, endpoints, tls=tls)
    )
    await client.start()
    return server, client


def _envelope(seq: int) -> Envelope:
    """A message of run "r" that the receiver's screening takes."""
    now = clock.now_ns()
    return Envelope(run_id="r", worker=0, seq=seq, intended_ns=now, sent_ns=now)


async def _handshake_cpu(mode: str, calls: int, rounds: int) -> dict[bool, tuple[float, Transport]]:
    """CPU per call (client and server, this process) with a new TLS connection per
    call, resumed and full, in alternating rounds."""
    pairs = {
        resume: await _pair(mode, Settings(tls=True, keepalive=False, tls_resumption=resume))
        for resume in (True, False)
    }
    cpu = dict.fromkeys(pairs, 0.0)
    try:
        for _, client in pairs.values():
            for _ in range(3):  # warm: the first handshake is full either way
                await client.request(client.context.topology.edges[0], _envelope(0))
        for _ in range(rounds):
            for resume, (_, client) in pairs.items():
                edge = client.context.topology.edges[0]
                start = time.process_time()
                for seq in range(calls):
                    await client.request(edge, _envelope(seq))
                cpu[resume] += time.process_time() - start
    finally:
        for server, client in pairs.values():
            await client.close()
            await server.close()
    return {resume: (cpu[resume] / (calls * rounds), pairs[resume][1]) for resume in pairs}


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_a_new_connection_costs_more_without_tls_resumption(mode: str) -> None:
    rounds = 4 if mode == "http" else 8  # gRPC's core threads make its CPU noisier
    measured = asyncio.run(_handshake_cpu(mode, calls=15, rounds=rounds))
    (resumed_cpu, resumed), (full_cpu, full) = measured[True], measured[False]
    assert resumed.connections_opened == full.connections_opened == 3 + 15 * rounds
    if mode == "http":  # the client sees its handshakes (gRPC's are inside its core)
        assert connection_counts([full])["tls_resumed"] == 0
        counts = connection_counts([resumed])
        assert counts["tls_resumed"] >= counts["tls_handshakes"] - 2 > 0
    assert full_cpu > resumed_cpu, (full_cpu, resumed_cpu)


def _connections(result: RunResult) -> dict[str, tuple[int, int, int]]:
    return {
        p.name: (p.connections_opened, p.tls_handshakes, p.tls_resumed) for p in result.processes
    }


# one user, one request at a time: a pool never needs a second connection
ONE_USER = LoadSpec(
    rate=1, concurrency=1, think_ms=5, duration_s=0.5, warmup_s=0, payload_bytes=100
)


def _lever_cell(name: str, suite: str = "tls") -> Topology:
    _, cells, _ = load_suite(LEVERS / f"{suite}.yaml")
    return next(c.topology for c in cells if c.variant == name)


@pytest.mark.integration
def test_the_tls_suite_cells_run_and_count_their_handshakes() -> None:
    # one user, one request at a time: a pool never needs a second connection
    load = LoadSpec(
        rate=1, concurrency=1, think_ms=5, duration_s=0.5, warmup_s=0, payload_bytes=100
    )
    counts = {}
    for name in ("http-tls-pooled", "http-tls-new-resumed", "http-tls-new-full"):
        result = asyncio.run(run_in_process(_lever_cell(name), load, Brokers(real=True)))
        assert result.completed == result.expected == result.sent > 0, name
        assert (result.errors, result.lost) == (0, 0), name
        counts[name] = (result.sent, _connections(result))
    sent, pooled = counts["http-tls-pooled"]
    assert pooled["loadgen/0"] == pooled["gateway/0"] == (1, 1, 0)  # kept between requests
    sent, resumed = counts["http-tls-new-resumed"]
    for process in ("loadgen/0", "gateway/0"):
        opened, handshakes, reused = resumed[process]
        assert opened == handshakes == sent  # one connection, one handshake per request
        assert reused >= handshakes - 1
    sent, full = counts["http-tls-new-full"]
    assert full["gateway/0"] == (sent, sent, 0)


@pytest.mark.integration
def test_grpc_opens_its_channels_or_one_per_call() -> None:
    opened = {}
    for name in ("grpc-4-channels", "grpc-new-channel", "grpc-tls-new-resumed"):
        suite = "tls" if "tls" in name else "connections"
        result = asyncio.run(run_in_process(_lever_cell(name, suite), ONE_USER, Brokers(real=True)))
        assert result.completed == result.expected == result.sent > 0, name
        opened[name] = (result.sent, _connections(result)["loadgen/0"][0])
    assert opened["grpc-4-channels"][1] == 4
    for name in ("grpc-new-channel", "grpc-tls-new-resumed"):
        sent, channels = opened[name]
        assert channels == sent


# ---- AMQPS -------------------------------------------------------------------------


@pytest.fixture
def tls_node(tmp_path: Path) -> Iterator[RabbitNode]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        pytest.skip("no RabbitMQ server installed (/usr/lib/rabbitmq/bin/rabbitmq-server)")
    with rabbit_node(tmp_path / "node", tls=True) as node:
        yield node


@pytest.mark.integration
def test_rabbitmq_edges_run_over_amqps(tls_node: RabbitNode, tmp_path: Path) -> None:
    path = topology_with(tmp_path, "rabbitmq", "")
    path.write_text(
        path.read_text().replace("mode: rabbitmq", "mode: rabbitmq, pattern: request-reply")
    )
    topology = load_topology(path)
    load = LoadSpec(rate=50, duration_s=0.5, warmup_s=0.2, payload_bytes=100)
    brokers = Brokers(rabbitmq_url=tls_node.tls_url, real=True)
    result = asyncio.run(run_in_process(topology, load, brokers, settle_s=3))
    assert result.completed == result.expected == result.sent > 0
    assert (result.errors, result.lost) == (0, 0)


def test_an_amqps_url_names_a_ca_file_that_is_there(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"--rabbitmq-url: cafile=.*nope\.pem: no such file"):
        Deployment(rabbitmq_url=f"amqps://guest:guest@127.0.0.1:5671/?cafile={missing}")
    missing.write_text("a CA")
    Deployment(rabbitmq_url=f"amqps://guest:guest@127.0.0.1:5671/?cafile={missing}")
