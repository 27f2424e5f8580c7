"""The pattern x mode matrix: every cell runs end to end with exact delivery counts
(in memory and over the real transports), or validation rejects it with a sentence.

Each cell: load generator -HTTP request-reply-> front -(cell)-> a (two replicas),
and for publish-subscribe a second subscriber b."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.topology import MODES, Topology
from hopbench.errors import ConfigError
from tests.inprocess import Brokers, run_in_process

PATTERNS = ("request-reply", "fire-and-forget", "publish-subscribe")
REJECTED = {("http", "publish-subscribe"), ("grpc", "publish-subscribe")}
CELLS = [(m, p) for m in MODES for p in PATTERNS if (m, p) not in REJECTED]
LOAD = LoadSpec(rate=300, duration_s=0.5, warmup_s=0.3, payload_bytes=50)


def cell_topology(tmp_path: Path, mode: str, pattern: str) -> Topology:
    second = f"  - {{from: front, to: b, mode: {mode}, pattern: {pattern}}}\n"
    path = tmp_path / "cell.yaml"
    path.write_text(
        "name: cell\n"
        "services:\n  front: {}\n  a: {replicas: 2}\n"
        + ("  b: {}\n" if pattern == "publish-subscribe" else "")
        + "edges:\n"
        "  - {from: loadgen, to: front, mode: http}\n"
        f"  - {{from: front, to: a, mode: {mode}, pattern: {pattern}}}\n"
        + (second if pattern == "publish-subscribe" else "")
    )
    return load_topology(path)


@pytest.mark.parametrize(("mode", "pattern"), CELLS)
def test_every_supported_cell_delivers_exactly(
    tmp_path: Path, brokers: Brokers, mode: str, pattern: str
) -> None:
    topology = cell_topology(tmp_path, mode, pattern)
    result = asyncio.run(run_in_process(topology, LOAD, brokers, settle_s=5))
    routes = {r.route: r for r in result.routes}
    expected = {
        "request-reply": {"loadgen (reply)"},
        "fire-and-forget": {"loadgen (reply)", "loadgen>front>a"},
        "publish-subscribe": {"loadgen (reply)", "loadgen>front>a", "loadgen>front>b"},
    }[pattern]
    assert set(routes) == expected
    assert result.expected == len(expected) * result.sent
    assert result.completed == result.expected
    assert (result.lost, result.duplicated, result.errors) == (0, 0, 0)
    handled = {p.name: p.handled for p in result.processes}
    total = result.sent + result.warmup.sent
    assert handled["a/0"] + handled["a/1"] == total  # the replicas share: each message once
    if pattern == "publish-subscribe":
        assert handled["b/0"] == total  # every subscriber gets every message
    if pattern == "request-reply":
        assert [h.service for h in routes["loadgen (reply)"].hops] == ["front", "a"]
    assert [(e.mode, e.pattern) for e in topology.edges[1:]] == [(mode, pattern)] * (
        len(topology.edges) - 1
    )


@pytest.mark.parametrize(("mode", "pattern"), sorted(REJECTED))
def test_impossible_cells_are_rejected_with_a_sentence(
    tmp_path: Path, mode: str, pattern: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cell_topology(tmp_path, mode, pattern)
    message = str(info.value)
    assert f"edges[1].pattern: {pattern} over {mode} cannot be" in message
    assert "use kafka or rabbitmq publish-subscribe" in message


def test_switching_a_pub_sub_flow_to_http_falls_back_to_one_send_per_subscriber() -> None:
    fanout = Path(__file__).resolve().parent.parent / "topologies" / "fanout.yaml"
    rabbit = load_topology(fanout, mode="rabbitmq")
    assert {e.pattern for e in rabbit.edges} == {"publish-subscribe"}  # kept: rabbitmq has it
    http = load_topology(fanout, mode="http")
    assert {e.pattern for e in http.edges} == {"fire-and-forget"}
    assert len(http.expected_routes()) == 3  # still every subscriber, one send each
