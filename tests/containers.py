"""HOPBENCH_TEST_BROKERS=containers: the integration tests' brokers in Docker.

Kafka (KRaft) and RabbitMQ start once per test session with
testcontainers (`pip install -e '.[docker]'`) instead of the embedded Tansu and
the local RabbitMQ, and every hopbench the tests start uses them too (through
HOPBENCH_KAFKA_BOOTSTRAP and HOPBENCH_RABBITMQ_URL). Needs a Docker engine.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hopbench.render.common import RABBITMQ_IMAGE

SWITCH = "HOPBENCH_TEST_BROKERS"
# testcontainers' Kafka module starts the broker through the Confluent image's own
# scripts, so it is that image here (KRaft, Apache Kafka 3.6); compose uses apache/kafka.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


def wanted() -> bool:
    value = os.environ.get(SWITCH, "local")
    if value not in ("local", "containers"):
        raise SystemExit(f"{SWITCH}={value!r}: expected 'local' (default) or 'containers'")
    return value == "containers"


@contextlib.contextmanager
def brokers() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, RabbitMQ URL) of two containers, removed afterwards."""
    with warnings.catch_warnings():  # its modules warn about their own deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.kafka import KafkaContainer
            from testcontainers.community.rabbitmq import RabbitMqContainer
        except ImportError:
            try:
                from testcontainers.kafka import KafkaContainer
                from testcontainers.rabbitmq import RabbitMqContainer
            except ImportError as exc:
                raise SystemExit(
                    f"{SWITCH}=containers needs testcontainers: "
                    f".venv/bin/pip install -e '.[docker]' ({exc})"
                ) from None
    makers: list[tuple[str, Callable[[], Any]]] = [
        (KAFKA_IMAGE, lambda: KafkaContainer(KAFKA_IMAGE).with_kraft()),
        (RABBITMQ_IMAGE, lambda: RabbitMqContainer(RABBITMQ_IMAGE, username="hopbench",
                                                   password="hopbench")),
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        started = []
        for image, make in makers:
            try:
                container = make()
                container.start()
            except Exception as exc:  # docker's errors vary: no engine, no image, no network
                pytest.exit(f"{SWITCH}=containers: could not start {image}: {exc}", returncode=3)
            stack.callback(container.stop)
            started.append(container)
        kafka, rabbit = started
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        yield kafka.get_bootstrap_server(), f"amqp://hopbench:hopbench@{host}:{port}/"
