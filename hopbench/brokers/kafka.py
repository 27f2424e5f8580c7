"""Topics on any Kafka-compatible broker, and a Kafka cluster given by address
(Apache Kafka in compose or Kubernetes, or a testcontainer) instead of Tansu."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hopbench.brokers.procs import server_process
from hopbench.errors import BrokerUnavailable
from hopbench.transports.plan import Provisioning


async def create_topics(bootstrap: str, partitions: Mapping[str, int]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(name, n, 1) for name, n in partitions.items()]
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"could not create topics on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    failed = [(t, code, msg) for t, code, msg in response.topic_errors if code != 0]
    if failed:
        raise BrokerUnavailable(f"the broker at {bootstrap} refused to create topics: {failed}")


class KafkaCluster:
    """A broker someone else runs: we create this run's topics and delete them after."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.version = ""
        self._topics: list[str] = []

    async def connect(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            versions = await admin.describe_cluster()
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"no Kafka broker answers at {self.bootstrap} ({exc}); start one or fix "
                "--kafka-bootstrap (leave it out to use the embedded broker)"
            ) from exc
        finally:
            await admin.close()
        self.version = f"cluster {versions.get('cluster_id')}"

    async def create_topics(self, partitions: Mapping[str, int]) -> None:
        await create_topics(self.bootstrap, partitions)
        self._topics = list(partitions)

    async def provision(self, plan: Provisioning) -> None:
        """Create the plan's topics (deleted again by ``stop``)."""
        await self.create_topics(plan.kafka_topics)

    async def stop(self) -> None:
        """Delete this run's topics (a best effort: the run's results are already in hand)."""
        if not self._topics:
            return
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await admin.start()
            await admin.delete_topics(self._topics)
        except KafkaError:
            pass
        finally:
            await admin.close()

    @property
    def address(self) -> tuple[str, int]:
        """The first bootstrap server's host and port."""
        host, _, port = self.bootstrap.split(",")[0].strip().rpartition(":")
        return host.strip("[]"), int(port) if port.isdigit() else 9092

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        product = server_product(host, port)
        where = f"{product + ' ' if product else ''}at {host}:{port}"
        return {
            "kind": "Kafka at an address (not started by hopbench)",
            "version": self.version,
            "product": product or "unknown (not a process of this host, or not recognised)",
            "bootstrap": self.bootstrap,
            "replication_factor": 1,
            "where": where,
            "label": f"kafka ({where})",
        }


def server_product(host: str, port: int) -> str:
    """'Apache Kafka 3.9.0' or 'Tansu' when the broker is a process of this host whose
    command line says which (the Kafka jar's name carries its version); else ''."""
    server = server_process(host, port)
    if server.pid is None:
        return ""
    import psutil

    try:
        cmdline = " ".join(psutil.Process(server.pid).cmdline())
    except psutil.Error:
        return ""
    jar = re.search(r"kafka_[\d.]+-(\d[\w.]*)\.jar", cmdline)
    if jar:
        return f"Apache Kafka {jar[1]}"
    return "Tansu" if "tansu" in cmdline else ""
