"""A child's brokers: before a service replica or load worker connects its
transports, each broker its edges use answers, waited for up to the run's
--brokers-wait (an agent's network may reach a broker later than the orchestrator's)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from hopbench.brokers.kafka import KafkaCluster
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.transports.context import TransportContext

log = logging.getLogger(__name__)


async def reach_brokers(
    context: TransportContext, say: Callable[[str], None] = log.warning
) -> None:
    """Wait for the brokers of this process's edges; BrokerUnavailable, naming the
    broker and its address, if one does not answer in time or refuses us."""
    topology = context.topology
    edges = (*topology.in_edges(context.service), *topology.out_edges(context.service))
    modes = {edge.mode for edge in edges}
    wait_s = context.brokers_wait_s
    if "rabbitmq" in modes and context.rabbitmq_url is not None:
        rabbit = RabbitMqBroker(context.rabbitmq_url)
        try:
            await rabbit.connect(wait_s, say)
        finally:
            await rabbit.close()
    if "kafka" in modes and context.kafka_bootstrap is not None:
        await KafkaCluster(context.kafka_bootstrap).connect(wait_s, say)
