"""What a run provisions before its services start: every Kafka topic (with its
partitions) and every RabbitMQ queue and exchange, each mode naming its own."""

from __future__ import annotations

from pathlib import Path

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.transports import provisioning
from hopbench.transports.context import TransportContext
from hopbench.transports.kafka import group_name, reply_topic, topic_name
from hopbench.transports.plan import Provisioning
from hopbench.transports.rabbitmq import dead_letter_name, exchange_name, queue_name

# Every pattern over both brokers: request-reply in from 2 load workers (Kafka),
# publish-subscribe and fire-and-forget and request-reply out of a 2-replica
# service, and the same three over RabbitMQ.
EVERY_PATTERN = """\
name: every-pattern
services:
  front: {replicas: 2}
  audit: {replicas: 3}
  search: {}
  billing: {}
  pricing: {replicas: 2}
  mail: {replicas: 2}
  stock: {}
  log: {}
  metrics: {replicas: 2}
edges:
  - {from: loadgen, to: front, mode: kafka, pattern: request-reply}
  - {from: front, to: audit, mode: kafka, pattern: publish-subscribe}
  - {from: front, to: search, mode: kafka, pattern: publish-subscribe}
  - {from: front, to: billing, mode: kafka, pattern: fire-and-forget,
     settings: {kafka_partitions: 4}}
  - {from: front, to: pricing, mode: kafka, pattern: request-reply}
  - {from: front, to: mail, mode: rabbitmq, pattern: fire-and-forget,
     settings: {rabbitmq_durable: true}}
  - {from: front, to: stock, mode: rabbitmq, pattern: request-reply}
  - {from: billing, to: log, mode: rabbitmq, pattern: publish-subscribe}
  - {from: billing, to: metrics, mode: rabbitmq, pattern: publish-subscribe}
"""


def every_pattern(tmp_path: Path) -> RunSpec:
    path = tmp_path / "every-pattern.yaml"
    path.write_text(EVERY_PATTERN)
    topology = load_topology(path)
    load = LoadSpec(rate=10, duration_s=1, warmup_s=0, payload_bytes=10, workers=2)
    return RunSpec(run_id="r1", topology=topology.to_dict(), load=load)


def test_the_plan_names_every_topic_queue_and_exchange(tmp_path: Path) -> None:
    plan = provisioning(every_pattern(tmp_path))
    assert plan == Provisioning(
        kafka_topics={
            "hb-r1-dead-letters": 1,  # what a consumer rejects (transports.admission)
            "hb-r1-loadgen-front": 2,  # the callee's replicas
            "hb-r1-reply-loadgen-0": 1,  # one reply topic per load worker
            "hb-r1-reply-loadgen-1": 1,
            "hb-r1-front": 3,  # one topic for both subscribers: the larger group
            "hb-r1-front-billing": 4,  # the edge's own kafka_partitions
            "hb-r1-front-pricing": 2,
            "hb-r1-reply-front-0": 1,  # one reply topic per calling replica
            "hb-r1-reply-front-1": 1,
        },
        rabbitmq_queues={
            "hb-r1-dead-letters": False,  # the run's dead letters, bound to their exchange
            "hb-r1-front-mail": True,  # the edge's own rabbitmq_durable
            "hb-r1-front-stock": False,
            "hb-r1-billing-log": False,
            "hb-r1-billing-metrics": False,
        },
        rabbitmq_exchanges={
            "hb-r1-dead-letters": ("hb-r1-dead-letters",),
            "hb-r1-billing": ("hb-r1-billing-log", "hb-r1-billing-metrics"),
        },
    )


def test_the_transports_use_the_names_the_plan_provisions(tmp_path: Path) -> None:
    spec = every_pattern(tmp_path)
    plan = provisioning(spec)
    edges = {e.name: e for e in spec.resolved.edges}
    run_id = TransportContext.of(spec, "front", 1).run_id
    kafka = [e for e in edges.values() if e.mode == "kafka"]
    assert {topic_name(run_id, e) for e in kafka} < set(plan.kafka_topics)
    assert reply_topic(run_id, "front", 1) in plan.kafka_topics
    assert group_name(run_id, edges["front->audit"]) == "hb-r1-audit"
    rabbit = [e for e in edges.values() if e.mode == "rabbitmq"]
    queues = {queue_name(run_id, e) for e in rabbit}
    assert queues | {dead_letter_name(run_id)} == set(plan.rabbitmq_queues)
    assert exchange_name(run_id, edges["billing->log"]) in plan.rabbitmq_exchanges


def test_modes_without_a_broker_need_nothing(tmp_path: Path) -> None:
    path = tmp_path / "every-pattern.yaml"
    path.write_text(EVERY_PATTERN)
    topology = load_topology(path, mode="http")
    load = LoadSpec(rate=10, duration_s=1, warmup_s=0, payload_bytes=10)
    spec = RunSpec(run_id="r1", topology=topology.to_dict(), load=load)
    assert provisioning(spec) == Provisioning()


def test_the_context_carries_what_a_transport_reads(tmp_path: Path) -> None:
    spec = every_pattern(tmp_path).model_copy(
        update={"endpoints": {"http": {"front": ["10.0.0.1:80", "10.0.0.2:81"]}}}
    )
    context = TransportContext.of(spec, "front", 1)
    assert (context.run_id, context.service, context.replica) == ("r1", "front", 1)
    assert context.topology.out_edges("front") == spec.resolved.out_edges("front")
    assert context.bind_address("http") == ("10.0.0.2", 81)
    assert TransportContext.of(spec, "front", 1, listen="0.0.0.0").bind_address("http") == (
        "0.0.0.0",
        81,
    )
    billing = spec.resolved.edges[3]
    assert context.settings_for(billing).kafka_partitions == 4
    assert context.settings_for(billing) is context.settings_for(billing)  # once per edge
    assert context.settings_for(spec.resolved.edges[0]) is context.settings
