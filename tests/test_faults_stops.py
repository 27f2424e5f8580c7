"""Clean stops and brokers waited for.

A `hopbench run` stopped by SIGTERM or SIGINT exits with 128 + the signal's number
after stopping every process it started and deleting every queue, exchange and
topic of the run: the tests list them before the signal (the run is under way) and
after (nothing is left). On kill -9 of the orchestrator, the embedded broker and
every child die with it. A broker that comes up late is waited for; one that never
comes fails on time, naming it; one that refuses the credentials fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiormq
import pytest

from hopbench.brokers.kafka import KafkaCluster
from hopbench.brokers.procs import dies_with_us, free_port, terminate_popen
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.brokers.tansu import tansu_binary
from hopbench.config.runspec import RunSpec
from hopbench.control.child import Child
from hopbench.errors import BrokerUnavailable, RunError
from hopbench.protocol.messages import Ready
from hopbench.transports import provisioning
from hopbench.transports.plan import Provisioning
from tests.conftest import TOPOLOGIES, reap

pytestmark = pytest.mark.integration


# --- helpers: a private Tansu, a delayed and cuttable proxy, what a run left ---


def start_tansu(port: int, log: Path) -> subprocess.Popen[bytes]:
    """A Tansu of the test's own on a chosen port (a 'Kafka at an address')."""
    binary, _ = tansu_binary()
    url = f"tcp://127.0.0.1:{port}"
    with log.open("ab") as out:
        return subprocess.Popen(
            [binary, "broker", "--cluster-id", "hbtest-stops", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_tansu(port, tmp_path / "tansu.log")
    try:
        asyncio.run(KafkaCluster(f"127.0.0.1:{port}").connect(wait_s=20))
        yield f"127.0.0.1:{port}"
    finally:
        terminate_popen(proc)


class Proxy:
    """A TCP forwarder to a real server on loopback: it listens from ``start`` on,
    and ``cut`` drops every connection through it (the server seems to go away)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def run_dir(out: Path) -> Path:
    (found,) = out.glob("runs/*")
    return found


def run_processes(out: Path) -> dict[int, str]:
    """The run's processes but the orchestrator: children name the run dir in --spec,
    the embedded Tansu its run id in its cluster id."""
    run_id = run_dir(out).name.rsplit("-", 1)[-1]
    marks = (f"{out}/runs/", f"hopbench-{run_id}")
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):  # (tmp_path itself says "pytest")
            found[int(proc.name)] = cmdline
    return found


async def rabbit_objects(url: str, plan: Provisioning) -> list[str]:
    """The plan's queues and exchanges that exist, by passive declares (plain AMQP)."""
    connection = await aiormq.connect(url)
    found = []
    try:
        names = [("queue", q) for q in plan.rabbitmq_queues]
        names += [("exchange", e) for e in plan.rabbitmq_exchanges]
        for kind, name in names:
            channel = await connection.channel()
            try:
                if kind == "queue":
                    await channel.queue_declare(name, passive=True)
                else:
                    await channel.exchange_declare(name, passive=True)
                found.append(name)
                await channel.close()
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass  # the channel is closed by the broker
    finally:
        await connection.close()
    return found


async def rabbit_delete(url: str, plan: Provisioning) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    for queue in plan.rabbitmq_queues:
        await channel.queue_delete(queue)
    for exchange in plan.rabbitmq_exchanges:
        await channel.exchange_delete(exchange)
    await connection.close()


async def kafka_topics(bootstrap: str, plan: Provisioning) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        return sorted(set(await admin.list_topics()) & set(plan.kafka_topics))
    finally:
        await admin.close()


def start_run(out: Path, *args: str) -> subprocess.Popen[str]:
    """`hopbench run` of the fanout topology, returned once its load is under way."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "fanout.yaml"),
         "--rate", "100", "--duration", "60", "--warmup", "0.5", "--out", str(out), *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.strip().startswith("load:"):
            break
    else:
        reap(proc)
        pytest.fail("the run did not start its load:\n" + "".join(seen))
    time.sleep(1)
    return proc


def kill_left(pids: dict[int, str]) -> None:
    """Whatever a failed test left of a run's processes, by their pids."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- SIGTERM and SIGINT: exit status, message, nothing left ---

CASES = {
    "kafka-embedded": [],
    "kafka-cluster": ["--kafka-bootstrap"],  # the private Tansu's address follows
    "rabbitmq-fanout": ["--mode", "rabbitmq"],
}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_stopped_run_exits_128_plus_the_signal_and_leaves_nothing(
    tmp_path: Path,
    rabbitmq_url: str,
    case: list[str],
    sig: signal.Signals,
    request: pytest.FixtureRequest,
) -> None:
    args = list(case)
    bootstrap = None
    if args == ["--kafka-bootstrap"]:
        bootstrap = request.getfixturevalue("private_tansu")
        args.append(bootstrap)
    out = tmp_path / "out"
    proc = start_run(out, *args, "--rabbitmq-url", rabbitmq_url)
    plan = provisioning(RunSpec.read(run_dir(out) / "spec.json"))
    before = run_processes(out)
    try:
        # before: the run is under way, with its processes and broker objects
        assert len(before) == 6 + (1 if not case else 0), before  # 5 replicas, a worker, Tansu
        if "--mode" in case:
            assert len(plan.rabbitmq_exchanges) == 3  # two fanouts and the dead letters'
            assert sorted(asyncio.run(rabbit_objects(rabbitmq_url, plan))) == sorted(
                [*plan.rabbitmq_queues, *plan.rabbitmq_exchanges]
            )
        if bootstrap is not None:
            assert asyncio.run(kafka_topics(bootstrap, plan)) == sorted(plan.kafka_topics)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 128 + sig
        assert proc.stderr is not None
        said = proc.stderr.read()
        assert f"hopbench: interrupted by {sig.name}; every process it started has been " in said
        assert "Traceback" not in said
        # after: nothing
        assert run_processes(out) == {}
        if "--mode" in case:
            assert asyncio.run(rabbit_objects(rabbitmq_url, plan)) == []
        if bootstrap is not None:
            assert asyncio.run(kafka_topics(bootstrap, plan)) == []
    finally:
        reap(proc)
        kill_left(run_processes(out))
        if plan.rabbitmq_queues:
            asyncio.run(rabbit_delete(rabbitmq_url, plan))


def test_kill_9_of_the_orchestrator_takes_tansu_and_every_child_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = start_run(out)
    before = run_processes(out)
    try:
        assert len(before) == 7, before  # Tansu, 5 replicas, a load worker
        assert any("tansu" in cmdline for cmdline in before.values())
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while run_processes(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run_processes(out) == {}
    finally:
        reap(proc)
        kill_left(before)


def test_dies_with_us_ties_only_from_the_main_thread() -> None:
    import threading

    assert dies_with_us() is not None
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(dies_with_us()))
    thread.start()
    thread.join()
    assert found == [None]  # its thread's end would kill the child: not tied


# --- brokers waited for ---


def test_a_rabbitmq_that_comes_up_after_2_s_is_waited_for_and_named(rabbitmq_url: str) -> None:
    async def scenario() -> tuple[float, list[str], str]:
        proxy = Proxy(RabbitMqBroker(rabbitmq_url).address[1])
        url = rabbitmq_url.replace(":5672", f":{proxy.port}")
        said: list[str] = []
        broker = RabbitMqBroker(url)
        started = time.monotonic()
        late = asyncio.get_running_loop().call_later(
            2, lambda: asyncio.ensure_future(proxy.start())
        )
        try:
            await broker.connect(wait_s=15, say=said.append)
            return time.monotonic() - started, said, broker.server_version
        finally:
            late.cancel()
            await broker.close()
            await proxy.close()

    took, said, version = asyncio.run(scenario())
    assert 2 <= took < 4
    assert len(said) == 1
    assert said[0].startswith("waiting for RabbitMQ at amqp://guest:***@127.0.0.1:")
    assert "(up to 15 s, --brokers-wait)" in said[0]
    assert version != "unknown"


def test_a_kafka_that_comes_up_after_2_s_is_waited_for_and_named(tmp_path: Path) -> None:
    port = free_port()
    said: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        late = loop.call_later(2, lambda: procs.append(start_tansu(port, tmp_path / "t.log")))
        started = time.monotonic()
        try:
            await KafkaCluster(f"127.0.0.1:{port}").connect(wait_s=20, say=said.append)
        finally:
            late.cancel()
        return time.monotonic() - started

    try:
        took = asyncio.run(scenario())
    finally:
        for proc in procs:
            terminate_popen(proc)
    assert 2 <= took < 8
    assert len(said) == 1
    assert said[0].startswith(f"waiting for Kafka at 127.0.0.1:{port} ")


WRONG = {
    "password": (
        "amqp://guest:not-the-password@127.0.0.1:5672/",
        "refused the login of user 'guest' (ACCESS_REFUSED",
    ),
    "vhost": (
        "amqp://guest:guest@127.0.0.1:5672/no-such-vhost",
        "refused virtual host 'no-such-vhost' (NOT_ALLOWED",
    ),
}


@pytest.mark.parametrize(("url", "answer"), WRONG.values(), ids=WRONG.keys())
def test_refused_credentials_are_an_error_at_once_not_a_wait(
    rabbitmq_url: str, url: str, answer: str
) -> None:
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(RabbitMqBroker(url).connect(wait_s=20, say=said.append))
    assert time.monotonic() - started < 3
    assert said == []  # not "waiting for"
    message = str(caught.value)
    assert message.startswith("RabbitMQ at 127.0.0.1:5672 ")
    assert answer in message
    assert "not-the-password" not in message  # the password is never shown


NOWHERE = {
    "rabbitmq": (["--mode", "rabbitmq", "--rabbitmq-url", "amqp://guest:guest@127.0.0.1:{port}/"],
                 "RabbitMQ does not answer at amqp://guest:***@127.0.0.1:{port}/"),
    "kafka": (["--mode", "kafka", "--kafka-bootstrap", "127.0.0.1:{port}"],
              "Kafka does not answer at 127.0.0.1:{port}"),
}  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), NOWHERE.values(), ids=NOWHERE.keys())
def test_a_broker_that_never_comes_fails_on_time_naming_it(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "chain.yaml"),
         *(a.format(port=port) for a in args), "--brokers-wait", "3", "--duration", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"waiting for {expected.split()[0]} at " in done.stderr
    assert expected.format(port=port) in done.stderr
    assert "in 3 s (--brokers-wait)" in done.stderr
    assert 3 <= took < 3 + 8  # the wait, the interpreter's start and a last attempt


# --- cleanup after the broker went away and came back ---


@contextlib.asynccontextmanager
async def through_proxy(
    rabbitmq_url: str, plan: Provisioning
) -> AsyncIterator[tuple[Proxy, RabbitMqBroker]]:
    """A broker object that reaches RabbitMQ through a Proxy, with the plan provisioned;
    at the end, whatever happened, the proxy is closed and the plan deleted on RabbitMQ."""
    proxy = Proxy(RabbitMqBroker(rabbitmq_url).address[1])
    await proxy.start()
    broker = RabbitMqBroker(rabbitmq_url.replace(":5672", f":{proxy.port}"))
    try:
        await broker.connect()
        await broker.provision(plan)
        yield proxy, broker
    finally:
        await proxy.close()
        await rabbit_delete(rabbitmq_url, plan)


def test_queues_are_deleted_over_a_new_connection_after_the_broker_went_away(
    rabbitmq_url: str,
) -> None:
    plan = Provisioning(
        rabbitmq_queues={f"hb-stops{os.getpid()}-a": True, f"hb-stops{os.getpid()}-b": False},
        rabbitmq_exchanges={f"hb-stops{os.getpid()}": (f"hb-stops{os.getpid()}-a",)},
    )

    async def scenario() -> tuple[list[str], list[str]]:
        async with through_proxy(rabbitmq_url, plan) as (proxy, broker):
            there = await rabbit_objects(rabbitmq_url, plan)
            proxy.cut()  # the connection is gone, as after a broker restart
            await asyncio.sleep(0.2)
            await broker.close()
            return there, await rabbit_objects(rabbitmq_url, plan)

    there, left = asyncio.run(scenario())
    assert sorted(there) == sorted([*plan.rabbitmq_queues, *plan.rabbitmq_exchanges])
    assert left == []


@pytest.mark.parametrize("stopped", [False, True])
def test_a_stopped_command_does_not_wait_for_a_broker_that_went_away(
    rabbitmq_url: str, stopped: bool, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # `docker compose stop` stops the brokers with the orchestrator: its cleanup, run
    # because its task was cancelled, tries once and gives up within 2 s. Any other
    # cleanup waits for a broker that restarts (here 3 s, to keep the test short).
    monkeypatch.setattr("hopbench.brokers.rabbitmq.RECONNECT_WAIT_S", 3.0)
    plan = Provisioning(rabbitmq_queues={f"hb-gone{os.getpid()}": False})

    async def scenario() -> float:
        async with through_proxy(rabbitmq_url, plan) as (proxy, broker):
            await proxy.close()  # the broker is gone: nothing listens any more
            await asyncio.sleep(0.2)
            start = time.monotonic()
            if not stopped:
                await broker.close()
                return time.monotonic() - start

            async def run() -> None:
                try:
                    await asyncio.sleep(30)  # a run, until Ctrl-C
                finally:
                    await broker.close()

            task = asyncio.create_task(run())
            await asyncio.sleep(0)
            start = time.monotonic()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return time.monotonic() - start

    took = asyncio.run(scenario())
    assert "could not delete the run's queues" in caplog.text
    if stopped:
        assert took < 1.0  # one refused connection
    else:
        assert took >= 3.0  # it waited for the broker to come back


def test_topics_deleted_on_a_restarted_kafka_end_without_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc = start_tansu(port, tmp_path / "t.log")
    try:
        cluster = KafkaCluster(bootstrap)
        asyncio.run(cluster.connect(wait_s=20))
        asyncio.run(cluster.create_topics({"hb-stops-a": 1, "hb-stops-b": 2}))
        terminate_popen(proc)
        proc = start_tansu(port, tmp_path / "t.log")  # a fresh Tansu: it has no topics
        asyncio.run(KafkaCluster(bootstrap).connect(wait_s=20))
        asyncio.run(cluster.stop())
        assert "could not delete" not in caplog.text
        asyncio.run(cluster.create_topics({"hb-stops-a": 1}))
        asyncio.run(cluster.stop())
        assert asyncio.run(kafka_topics(bootstrap, Provisioning({"hb-stops-a": 1}))) == []
    finally:
        terminate_popen(proc)


def service_spec(tmp_path: Path, url: str, wait_s: float) -> tuple[RunSpec, Path]:
    from hopbench.config.load import load_topology
    from hopbench.config.runspec import LoadSpec

    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="rabbitmq")
    spec = RunSpec(
        run_id=f"stops{os.getpid()}",
        topology=topology.to_dict(),
        load=LoadSpec(rate=1, duration_s=1, warmup_s=0, payload_bytes=1),
        rabbitmq_url=url,
        brokers_wait_s=wait_s,
    )
    spec.write(tmp_path / "spec.json")
    return spec, tmp_path / "spec.json"


async def spawn_worker(tmp_path: Path, spec_path: Path) -> Child:
    return await Child.spawn(
        "worker/0", "hopbench.services",
        ["--service", "worker", "--replica", "0", "--spec", str(spec_path)],
        tmp_path / "worker.log",
    )  # fmt: skip


def test_a_service_process_waits_for_its_broker_too(tmp_path: Path, rabbitmq_url: str) -> None:
    async def scenario() -> float:
        proxy = Proxy(RabbitMqBroker(rabbitmq_url).address[1])
        spec, spec_path = service_spec(
            tmp_path, rabbitmq_url.replace(":5672", f":{proxy.port}"), wait_s=15
        )
        broker = RabbitMqBroker(rabbitmq_url)
        await broker.connect()
        await broker.provision(provisioning(spec))  # the queue the worker consumes
        child = await spawn_worker(tmp_path, spec_path)
        loop = asyncio.get_running_loop()
        late = loop.call_later(2, lambda: asyncio.ensure_future(proxy.start()))
        started = time.monotonic()
        try:
            await child.expect(Ready, 30)
            return time.monotonic() - started
        finally:
            late.cancel()
            await child.kill()
            await broker.close()
            await proxy.close()

    took = asyncio.run(scenario())
    assert took >= 2
    log = (tmp_path / "worker.log").read_text()
    assert "waiting for RabbitMQ at amqp://guest:***@127.0.0.1:" in log


def test_a_service_process_whose_broker_never_comes_says_which(tmp_path: Path) -> None:
    port = free_port()
    _, spec_path = service_spec(tmp_path, f"amqp://guest:guest@127.0.0.1:{port}/", wait_s=1)

    async def scenario() -> str:
        child = await spawn_worker(tmp_path, spec_path)
        try:
            await child.expect(Ready, 30)
        except RunError as exc:
            return str(exc)
        finally:
            await child.kill()
        return "ready"

    said = asyncio.run(scenario())
    assert said.startswith(
        f"worker/0 reported an error: RabbitMQ does not answer at amqp://guest:***@127.0.0.1:{port}/"
    )
    assert "in 1 s (--brokers-wait)" in said
