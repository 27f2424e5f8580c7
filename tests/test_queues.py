"""Where the queue builds, on real brokers and real processes: the broker readers
count exactly, and the three known bottlenecks are named (a service out of CPU, a
broker consumer held by its prefetch, a frozen replica), each run through the CLI
as a user would, bounded in time."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiormq
import pytest

from hopbench.brokers.kafka import LagReader
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.transports.plan import Provisioning
from tests.conftest import CONTAINERS, TOPOLOGIES
from tests.inprocess import KafkaBroker

pytestmark = pytest.mark.integration


def test_rabbitmq_depth_counts_every_ready_message(rabbitmq_url: str) -> None:
    name = f"hb-test-depth-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[dict[str, int | None], dict[str, int | None]]:
        broker = RabbitMqBroker(rabbitmq_url)
        await broker.connect()
        try:
            await broker.declare_queues({name: False})
            connection = await aiormq.connect(rabbitmq_url)
            channel = await connection.channel(publisher_confirms=True)
            for _ in range(37):
                await channel.basic_publish(b"x", routing_key=name)
            await connection.close()
            first = await broker.depths([name, f"{name}-missing"])
            again = await broker.depths([name])  # a missing queue costs one read, no more
            return first, again
        finally:
            await broker.close()  # deletes the queue

    first, again = asyncio.run(scenario())
    assert first == {name: 37, f"{name}-missing": None}  # unknown, never 0
    assert again == {name: 37}


def test_kafka_lag_is_log_end_minus_committed_on_tansu(kafka: KafkaBroker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic, group = f"hb-test-lag-{uuid.uuid4().hex[:8]}", f"hb-test-group-{uuid.uuid4().hex[:6]}"

    async def scenario() -> dict[str, int | None]:
        await kafka.provision(Provisioning(kafka_topics={topic: 2}))
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        for i in range(50):
            await producer.send_and_wait(topic, b"x", partition=i % 2)
        await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka.bootstrap, group_id=group,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            for _ in range(20):
                await consumer.getone()
            await consumer.commit()
        finally:
            await consumer.stop()
        reader = LagReader(kafka.bootstrap, {group: {topic: 2}, "hb-test-nobody": {topic: 2}})
        await reader.start()
        try:
            return await reader.read()
        finally:
            await reader.close()

    lag = asyncio.run(scenario())
    assert lag == {group: 30, "hb-test-nobody": 50}  # a group with no commit lags by all


def hopbench(out: Path, *argv: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", *argv, "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # past its knee a run may lose messages within the grace period: it is then failed,
    # and the command says so with exit 1; either way the verdict is in the results
    assert done.returncode in (0, 1), done.stderr
    run: dict[str, Any] = json.loads((out / "results.json").read_text())["runs"][0]
    assert done.returncode == (1 if run["status"] == "failed" else 0), done.stderr
    assert "bottleneck: " in done.stderr  # the verdict line, in the terminal too
    samples = run["samples"]
    for series in samples["queues"]:
        assert len(series["values"]) == len(samples["t_s"]), series["name"]
    assert samples["sampler_cpu_s"] >= 0
    return run


def test_a_service_past_its_cpu_capacity_is_named_with_its_in_flight(tmp_path: Path) -> None:
    # 5 ms of CPU per message on one replica: at most 200/s; 300/s piles up ~100/s
    run = hopbench(tmp_path, str(TOPOLOGIES / "fixed-capacity.yaml"), "--rate", "300",
                   "--duration", "4", "--warmup", "1", "--grace", "1")  # fmt: skip
    found = run["bottleneck"]
    assert found["queue"]["waits_for"] == "busy"
    assert found["queue"]["edge"] == "loadgen->busy"
    assert found["queue"]["per_s"] > 20  # ~100/s; less when this machine is short of CPU
    assert found["resource"]["kind"] == "cpu"
    assert found["resource"]["name"] == "busy/0"
    assert found["text"].startswith("busy/0 ")
    assert "its HTTP in-flight" in found["text"]


SLOW_CONSUMER = """
name: slow-consumer
services:
  sink:
    work: {cpu_us: 0, io_ms: 20}
edges:
  - {from: loadgen, to: sink, mode: rabbitmq, pattern: fire-and-forget}
"""


@pytest.mark.parametrize("mode", ["rabbitmq", "kafka"])
def test_a_consumer_held_by_its_prefetch_names_its_queue(
    tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    if mode == "rabbitmq":
        request.getfixturevalue("rabbitmq_url")  # skips, or fails in CI, without one
    # 20 ms of waiting per message, one at a time: at most 50/s; 150/s piles up ~100/s
    topology = tmp_path / "slow-consumer.yaml"
    topology.write_text(SLOW_CONSUMER)
    run = hopbench(tmp_path, str(topology), "--mode", mode, "--rate", "150", "--duration", "3",
                   "--warmup", "1", "--grace", "1", "--setting", "prefetch=1")  # fmt: skip
    found = run["bottleneck"]
    kind = {"rabbitmq": "broker_queue", "kafka": "consumer_lag"}[mode]
    assert found["queue"]["kind"] == kind
    assert found["queue"]["waits_for"] == "sink"
    assert found["queue"]["per_s"] > 30
    assert found["resource"]["kind"] == "concurrency"
    assert found["resource"]["name"] == "sink/0"
    assert run["run_id"] in found["queue"]["queue"]  # the run's own queue or group, by name
    samples = run["samples"]
    (queue,) = [q for q in samples["queues"] if q["name"] == found["queue"]["queue"]]
    window = [v for t, v in zip(samples["t_s"], queue["values"], strict=True) if 0 <= t <= 3]
    assert None not in window  # read every second of the window
    names = {p["name"] for p in samples["processes"]}
    assert {"sink/0", "loadgen/0", "orchestrator"} <= names
    if mode == "kafka" and not CONTAINERS:
        assert "kafka-broker" in names  # the embedded broker's CPU, sampled too
    with (tmp_path / "results.csv").open() as rows:
        assert next(csv.DictReader(rows))["bottleneck"] == found["text"]


def test_a_frozen_replica_is_named(tmp_path: Path) -> None:
    # worker/0 stopped from t=1 s to past the window: the chain's completions fall short
    run = hopbench(tmp_path, str(TOPOLOGIES / "chain.yaml"), "--mode", "http", "--rate", "200",
                   "--duration", "3", "--warmup", "1", "--grace", "1",
                   "--pause", "worker/0@1:3")  # fmt: skip
    found = run["bottleneck"]
    assert found["resource"]["kind"] == "stopped"
    assert found["resource"]["name"] == "worker/0"
    assert found["queue"]["waits_for"] == "worker"
    assert found["text"].startswith("worker/0 stopped")
