"""Per-edge settings: validated like the file's other fields, honoured per edge by
every transport, and written into the results next to the edge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.errors import ConfigError
from hopbench.transports import provisioning
from tests.inprocess import Brokers, run_in_process

TOPOLOGY = """\
name: tuned
services:
  front: {}
  events: {replicas: 2}
  jobs: {}
edges:
  - {from: loadgen, to: front, mode: http, settings: {request_timeout_s: 5, http_connections: 4}}
  - {from: front, to: events, mode: kafka, pattern: fire-and-forget,
     settings: {kafka_acks: -1, kafka_partitions: 3, kafka_linger_ms: 1, prefetch: 10}}
  - {from: front, to: jobs, mode: rabbitmq, pattern: request-reply,
     settings: {rabbitmq_confirms: true, rabbitmq_durable: true, request_timeout_s: 2}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tuned.yaml"
    path.write_text(text)
    return path


def test_each_edge_runs_with_its_own_settings(tmp_path: Path, brokers: Brokers) -> None:
    topology = load_topology(write(tmp_path, TOPOLOGY))
    load = LoadSpec(rate=200, duration_s=0.5, warmup_s=0.3, payload_bytes=20)
    spec = RunSpec(run_id="x", topology=topology.to_dict(), load=load)
    plan = provisioning(spec)
    assert plan.kafka_topics["hb-x-front-events"] == 3
    # the edge's queue, durable as it asked; the run's dead-letter queue is not
    assert plan.rabbitmq_queues == {"hb-x-front-jobs": True, "hb-x-dead-letters": False}
    assert spec.for_edge(topology.edges[1]).kafka_acks == -1
    assert spec.for_edge(topology.edges[0]).kafka_acks == 1  # the run's default
    result = asyncio.run(run_in_process(topology, load, brokers, settle_s=5))
    assert result.completed == result.expected == 2 * result.sent
    assert (result.lost, result.errors) == (0, 0)
    settings = {e.name: e.settings for e in result.edges}
    assert settings["front->jobs"] == {
        "rabbitmq_confirms": True, "rabbitmq_durable": True, "request_timeout_s": 2.0
    }  # fmt: skip
    assert settings["front->events"]["kafka_partitions"] == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("kafka_acks: -1", "kafka_ack: -1"),
        ("prefetch: 10", "prefetch: 0"),
    ],
)
def test_bad_edge_settings_get_a_sentence(tmp_path: Path, change: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(write(tmp_path, TOPOLOGY.replace(change, expected)))
    message = str(info.value)
    assert f"{tmp_path / 'tuned.yaml'} line 9: edges[1].settings." in message
    assert ("not a per-edge setting" in message) or ("greater than or equal to 1" in message)
