"""Shared fixtures: a Kafka broker for the session (Tansu), the local RabbitMQ,
and the ``brokers`` parameter that runs one test body in memory and over real
brokers. With HOPBENCH_TEST_BROKERS=containers both brokers are Docker
containers instead (tests/containers.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopbench.brokers.kafka import KafkaCluster
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.brokers.tansu import TansuBroker
from hopbench.errors import BrokerUnavailable
from tests import containers
from tests.inprocess import Brokers, KafkaBroker
from tests.namespaces import Network

CONTAINERS = containers.wanted()
# A shell's background job starts with SIGINT ignored, and every process it starts
# inherits that: the tests that stop a run with SIGINT, as Ctrl-C does, need it
# delivered as a terminal would (a handler here is reset to the default in children).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"


def reap(proc: subprocess.Popen[str]) -> None:
    """Whatever a test did, the hopbench it started is gone and its pipes closed."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.fixture(scope="session", autouse=True)
def broker_containers() -> Iterator[None]:
    """In container mode, every hopbench started by a test uses the containers."""
    if not CONTAINERS:
        yield
        return
    with containers.brokers() as (bootstrap, url), pytest.MonkeyPatch.context() as env:
        env.setenv("HOPBENCH_KAFKA_BOOTSTRAP", bootstrap)
        env.setenv("HOPBENCH_RABBITMQ_URL", url)
        yield


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    if CONTAINERS:
        cluster = KafkaCluster(os.environ["HOPBENCH_KAFKA_BOOTSTRAP"])
        asyncio.run(cluster.connect())
        yield cluster
        return
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        asyncio.run(broker.start())
        yield broker
    finally:
        asyncio.run(broker.stop())


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    url = os.environ.get("HOPBENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

    async def check() -> None:
        broker = RabbitMqBroker(url)
        try:
            await broker.connect()
        finally:
            await broker.close()

    try:
        asyncio.run(check())
    except BrokerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))  # CI has a RabbitMQ: its absence is a failure there
        pytest.skip(str(exc))
    return url


@pytest.fixture(params=["inmemory", pytest.param("real", marks=pytest.mark.integration)])
def brokers(request: pytest.FixtureRequest) -> Brokers:
    if request.param == "inmemory":
        return Brokers()
    return Brokers(
        kafka=request.getfixturevalue("kafka"),
        rabbitmq_url=request.getfixturevalue("rabbitmq_url"),
        real=True,
    )


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make network namespaces")
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.close()


# `make test` runs these modules one test at a time, alone on the machine, and the rest
# on two workers (pytest-xdist): these compare CPU or latency between runs, judge where
# a queue builds, or list the machine's processes before and after, so a test running
# beside them would move their numbers or show up in their lists; the namespace tests
# start a dozen processes each and wait for them on a clock.
SERIAL = frozenset(
    {
        "test_agents",
        "test_bottleneck",
        "test_cli_run",
        "test_compose_emulated",
        "test_failures",
        "test_faults",
        "test_faults_agents",
        "test_faults_stops",
        "test_k8s_emulated",
        "test_lever_conns",
        "test_measurement",
        "test_netns",
        "test_processes",
        "test_queues",
        "test_selfcheck",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in SERIAL:
            item.add_marker(pytest.mark.serial)
