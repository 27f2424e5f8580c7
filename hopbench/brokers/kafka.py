"""Topics on any Kafka-compatible broker, and a Kafka cluster given by address
(Apache Kafka in compose or Kubernetes, or a testcontainer) instead of Tansu."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from hopbench.brokers.procs import server_process
from hopbench.brokers.wait import NotYet, cleanup_limits, refused, timed_out, wait_for_broker
from hopbench.errors import BrokerUnavailable
from hopbench.transports.plan import Provisioning

log = logging.getLogger(__name__)
CLEANUP_TIMEOUT_S = 15.0
START_IT = "Start one or fix --kafka-bootstrap (leave it out to use the embedded broker)"


TOPIC_ALREADY_EXISTS = 36


async def create_topics(
    bootstrap: str, partitions: Mapping[str, int], *, exist_ok: bool = False
) -> None:
    """Create the topics; with ``exist_ok``, one the broker already has is fine (a client
    that reached a restarted broker first may have had it made)."""
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
    ok = {0, TOPIC_ALREADY_EXISTS} if exist_ok else {0}
    failed = [(t, code, msg) for t, code, msg in response.topic_errors if code not in ok]
    if failed:
        raise BrokerUnavailable(f"the broker at {bootstrap} refused to create topics: {failed}")


class KafkaCluster:
    """A broker someone else runs: we create this run's topics and delete them after."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.version = ""
        self._topics: list[str] = []

    async def connect(self, wait_s: float = 0.0, say: Callable[[str], None] = log.info) -> None:
        """Reach the cluster, waiting up to ``wait_s`` for a broker that is still starting."""
        self.version = await wait_for_broker(
            "Kafka", self.bootstrap, self._describe, wait_s=wait_s, say=say, fix=START_IT
        )

    async def _describe(self, timeout_s: float) -> str:
        """One attempt: the cluster's id; NotYet when no broker answers."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import (
            KafkaConnectionError,
            KafkaError,
            KafkaTimeoutError,
            NodeNotReadyError,
            RequestTimedOutError,
        )

        not_yet = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError,
                   RequestTimedOutError, OSError, TimeoutError)  # fmt: skip
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            versions = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        except not_yet as exc:
            raise NotYet(timed_out(exc)) from exc
        except KafkaError as exc:
            answer = refused("Kafka", self.bootstrap, timed_out(exc), START_IT)
            raise BrokerUnavailable(answer) from exc
        finally:
            await admin.close()
        return f"cluster {versions.get('cluster_id')}"

    async def create_topics(self, partitions: Mapping[str, int], *, exist_ok: bool = False) -> None:
        await create_topics(self.bootstrap, partitions, exist_ok=exist_ok)
        self._topics = list(partitions)

    async def provision(self, plan: Provisioning) -> None:
        """Create the plan's topics (deleted again by ``stop``)."""
        await self.create_topics(plan.kafka_topics)

    async def stop(self) -> None:
        """Delete this run's topics, over a new connection (a broker that restarted
        meanwhile is reached again; one that lost them answers for each that it does not
        know it). A best effort, bounded in time: what could not be deleted is logged."""
        if not self._topics:
            return
        cleanup_s, _ = cleanup_limits(CLEANUP_TIMEOUT_S, 0)
        try:
            await asyncio.wait_for(self._delete_topics(), cleanup_s)
        except Exception as exc:  # cleanup must not mask the run's own error
            log.warning("could not delete the run's topics %s at %s (%s)",
                        self._topics, self.bootstrap, timed_out(exc))  # fmt: skip
        else:
            self._topics = []

    async def _delete_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.delete_topics(self._topics)
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


class LagReader:
    """Lag of consumer groups: log end offset − committed offset, summed over every
    partition a group reads (a consumer's ``end_offsets`` and the admin client's
    offset fetch).

    Tansu answers the offset fetch only for named partitions (the "all of the group's
    partitions" form closes the connection), so the partitions are named: every
    topic's, from the run's plan. A group that has committed nothing yet reads from
    offset 0: the run's topics are new. The committed offset trails what the consumer
    took by up to its auto-commit interval (200 ms in hopbench's consumers).
    """

    def __init__(self, bootstrap: str, groups: Mapping[str, Mapping[str, int]]) -> None:
        self.bootstrap = bootstrap
        self.groups = groups  # group -> topic -> partitions
        self._admin: Any = None
        self._ends: Any = None
        self.error: str | None = None  # the last read that failed, and why

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        self._ends = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=5000
        )
        try:
            await self._admin.start()
            await self._ends.start()
        except KafkaError as exc:
            await self.close()
            raise BrokerUnavailable(f"cannot read consumer lag on {self.bootstrap}: {exc}") from exc

    async def read(self) -> dict[str, int | None]:
        """Each group's lag now; None for a group that could not be read."""
        from aiokafka.errors import KafkaError
        from aiokafka.structs import TopicPartition

        found: dict[str, int | None] = dict.fromkeys(self.groups)
        if self._admin is None:
            return found
        every = [
            TopicPartition(topic, p)
            for topics in self.groups.values()
            for topic, count in topics.items()
            for p in range(count)
        ]
        try:
            ends = await self._ends.end_offsets(every)
        except KafkaError as exc:
            self.error = f"end offsets: {exc!r}"
            return found
        for group, topics in self.groups.items():
            mine = [TopicPartition(t, p) for t, count in topics.items() for p in range(count)]
            try:
                committed = await self._admin.list_consumer_group_offsets(group, partitions=mine)
            except KafkaError as exc:
                self.error = f"offset fetch of {group}: {exc!r}"
                continue
            found[group] = sum(max(ends[tp] - max(_offset(committed.get(tp)), 0), 0) for tp in mine)
        return found

    async def close(self) -> None:
        if self._ends is not None:
            await self._ends.stop()
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._ends = None


def _offset(committed: Any) -> int:
    """A committed offset; -1 (nothing committed) when there is none."""
    return -1 if committed is None else int(committed.offset)
