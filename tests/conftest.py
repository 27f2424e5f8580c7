"""Shared fixtures: a Tansu broker for the session, the local RabbitMQ, and the
``brokers`` parameter that runs one test body in memory and over real brokers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopbench.broker.rabbitmq import RabbitMqBroker
from hopbench.broker.tansu import TansuBroker
from hopbench.errors import BrokerUnavailable
from tests.inprocess import Brokers

RABBITMQ_URL = os.environ.get("HOPBENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
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


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        asyncio.run(broker.start())
        yield broker
    finally:
        asyncio.run(broker.stop())


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    async def check() -> None:
        broker = RabbitMqBroker(RABBITMQ_URL)
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
    return RABBITMQ_URL


@pytest.fixture(params=["inmemory", pytest.param("real", marks=pytest.mark.integration)])
def brokers(request: pytest.FixtureRequest) -> Brokers:
    if request.param == "inmemory":
        return Brokers()
    return Brokers(
        tansu=request.getfixturevalue("tansu"),
        rabbitmq_url=request.getfixturevalue("rabbitmq_url"),
        real=True,
    )
