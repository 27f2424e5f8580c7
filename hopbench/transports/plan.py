"""What the brokers must hold before any process of a run starts, by name.

Each broker mode computes its own part in its own module (``plan(spec)``: names
and counts come from the mode, which also reads and writes them); the registry
(``hopbench.transports.provisioning``) asks every mode the topology uses and joins
the parts. The brokers' admin clients (hopbench.brokers) create what a plan names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Provisioning:
    # Kafka: topic -> partitions
    kafka_topics: Mapping[str, int] = field(default_factory=dict)
    # RabbitMQ: queue -> durable
    rabbitmq_queues: Mapping[str, bool] = field(default_factory=dict)
    # RabbitMQ: fanout exchange -> the queues bound to it
    rabbitmq_exchanges: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # RabbitMQ: queue -> its x-queue-type, for the queues that are not classic
    rabbitmq_queue_types: Mapping[str, str] = field(default_factory=dict)

    def __or__(self, other: Provisioning) -> Provisioning:
        """Both plans' names (each mode fills its own fields)."""
        return Provisioning(
            kafka_topics={**self.kafka_topics, **other.kafka_topics},
            rabbitmq_queues={**self.rabbitmq_queues, **other.rabbitmq_queues},
            rabbitmq_exchanges={**self.rabbitmq_exchanges, **other.rabbitmq_exchanges},
            rabbitmq_queue_types={**self.rabbitmq_queue_types, **other.rabbitmq_queue_types},
        )
