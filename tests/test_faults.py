"""Faults as measured events: a replica killed (one of two, the only one, started
again), the embedded Kafka broker killed or restarted, a private RabbitMQ node
restarted. Each run ends on time, writes what it measured, names the fault and its
moment, and counts every message exactly: sent = completed + failed sends on a
request-reply route, expected = completed + lost on a one-way one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hopbench.config.faults import Fault, check_faults
from hopbench.errors import ConfigError
from hopbench.run.netproxy import LinkProxy
from tests.cli import hopbench
from tests.conftest import TOPOLOGIES, reap
from tests.rabbitnode import rabbit_node

CHAIN = str(TOPOLOGIES / "chain.yaml")


def only_run(out: Path) -> dict[str, Any]:
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    result: dict[str, Any] = run
    return result


def process(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in run["processes"] if p["name"] == name)
    return found


def failed_sends(run: dict[str, Any]) -> int:
    """Sends of the measured window that failed (one route: expected is sent minus them);
    the timeline's errors from the window's start count them too, and a warm-up send
    that failed late besides."""
    failed = int(run["sent"] - run["expected"])
    assert sum(point["errors"] for point in run["timeline"] if point["t_s"] >= 0) >= failed
    return failed


def test_the_fault_flag_is_checked_with_the_fix() -> None:
    assert Fault.parse("kill:worker/0@5s+restart") == Fault("kill", "worker/0", 5.0, True)
    assert Fault.parse("restart:kafka@500ms").at_s == 0.5
    delay = Fault.parse("delay:rabbitmq@2:3s+0.2")
    assert (delay.at_s, delay.for_s, delay.latency_s) == (2.0, 3.0, 0.2)
    assert delay.text == "delay:rabbitmq@2s:3s+200ms"
    assert Fault.parse("drop:rabbitmq@1s").text == "drop:rabbitmq@1s"
    cases = {
        "kill:worker/0": "expected kill:SERVICE/REPLICA@AT",
        "stop:worker/0@1": "expected kill:SERVICE/REPLICA@AT",
        "kill:worker/0@-1": "0 or more seconds",
        "kill:worker/0@1+again": "expected kill:SERVICE/REPLICA@AT",
        "restart:worker/0@1": "kill it with +restart: kill:worker/0@1+restart",
        "kill:kafka@1+restart": "restart:kafka@AT",
        "kill:worker@1": "is not SERVICE/REPLICA",
        "drop:kafka@1": "drop the connections to rabbitmq only, not 'kafka'",
        "delay:rabbitmq@1s+200ms": "expected delay:rabbitmq@AT:FOR+LATENCY",
        "delay:rabbitmq@1s:0s+200ms": "FOR and LATENCY must be over 0",
    }
    for text, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            Fault.parse(text)
        assert str(info.value).startswith(f"--fault {text}: "), info.value
        assert expected in str(info.value), info.value
    replicas, modes = {"gateway": 1, "worker": 2}, {"http"}
    checks = {
        "kill:worker/2@1": "no such replica; there are gateway/0..0, worker/0..1",
        "kill:worker/0@9": "not inside the measured window (0 to 4 s)",
        "kill:kafka@1": "no edge of this topology uses kafka",
        "drop:rabbitmq@1": "no edge of this topology uses rabbitmq",
    }
    for text, expected in checks.items():
        with pytest.raises(ConfigError) as info:
            check_faults([Fault.parse(text)], replicas, modes, 4.0, None)
        assert expected in str(info.value), info.value
    with pytest.raises(ConfigError, match="only the Kafka broker it starts itself"):
        check_faults([Fault.parse("restart:kafka@1")], replicas, {"kafka"}, 4.0, "k:9092")
    done = hopbench("run", CHAIN, "--fault", "kill:worker/3@1s", "--out", "/nonexistent/x")
    assert done.returncode == 2
    assert done.stderr.startswith("hopbench: error: --fault kill:worker/3@1s: no such replica")
    assert "Traceback" not in done.stderr
    done = hopbench("run", CHAIN, "--mode", "rabbitmq", "--agents", "{service}-{replica}:7070",
                    "--fault", "drop:rabbitmq@1s", "--out", "/nonexistent/x")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("hopbench: error: --fault drop:rabbitmq@1s: the connections")
    assert "drop --agents and --worker-agents" in done.stderr


@pytest.mark.integration
def test_kill_one_of_two_replicas_the_survivor_serves_every_loss_counted(tmp_path: Path) -> None:
    done = hopbench("run", CHAIN, "--set", "services.worker.replicas=2", "--rate", "100",
                    "--duration", "4", "--warmup", "1", "--grace", "1",
                    "--fault", "kill:worker/0@2s", "--out", str(tmp_path),
                    report=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    run = only_run(tmp_path)
    # a fault asked for is the measurement, not a failure of the run
    assert (run["status"], run["failure"]) == ("ok", None)
    (event,) = run["faults"]
    assert (event["fault"], event["target"]) == ("kill:worker/0@2s", "worker/0")
    assert 2.0 <= event["t_s"] < 2.5
    assert "killed with SIGKILL" in event["what"]
    assert any(n.startswith(f"t={event['t_s']:.2f} s: worker/0 (pid") for n in run["notes"])
    dead = process(run, "worker/0")
    assert dead["died"].startswith("killed on purpose at t=2.")
    # every message is accounted for: 400 sent, each completed or failed, none lost
    failed = failed_sends(run)
    assert run["sent"] == 400
    assert run["completed"] + failed == 400
    assert (run["lost"], run["expected"]) == (0, run["completed"])
    # round robin: after the kill about half the calls met the dead replica, each a
    # failed call at the gateway and a failed send at the load worker
    assert 0 < failed <= 110
    assert process(run, "gateway/0")["errors"] == failed
    # the survivor served: it handled every call that completed after the kill
    after = sum(p["completed"] for p in run["timeline"] if p["t_s"] >= 3)
    assert after > 0
    assert process(run, "worker/1")["handled"] >= after
    assert "t=2." in done.stderr  # the note, as the run ends
    assert "killed with SIGKILL" in (tmp_path / "report.html").read_text()


@pytest.mark.integration
def test_kill_the_only_replica_and_start_it_again(tmp_path: Path) -> None:
    done = hopbench("run", CHAIN, "--rate", "100", "--duration", "12", "--warmup", "1",
                    "--grace", "1", "--fault", "kill:worker/0@1s+restart",
                    "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    killed, started = run["faults"]
    assert killed["what"].startswith("worker/0 (pid")
    assert started["what"] == "worker/0#2 started in place of worker/0, ready"
    assert killed["t_s"] < started["t_s"] < 12
    assert run["sent"] == 1200
    assert run["completed"] + failed_sends(run) == 1200
    assert run["lost"] == 0
    # nothing completes while no replica runs; the new one serves from then on
    down = [p for p in run["timeline"] if killed["t_s"] + 0.1 < p["t_s"] < started["t_s"] - 1]
    assert all(p["completed"] == 0 for p in down)
    assert sum(p["completed"] for p in run["timeline"] if p["t_s"] > started["t_s"] + 1) > 0
    assert process(run, "worker/0#2")["handled"] > 0
    assert process(run, "worker/0")["died"].startswith("killed on purpose")


@pytest.mark.integration
def test_the_embedded_kafka_broker_killed_is_named_and_the_run_ends(tmp_path: Path) -> None:
    started = time.monotonic()
    done = hopbench("run", CHAIN, "--mode", "kafka", "--pattern", "fire-and-forget",
                    "--rate", "100", "--duration", "4", "--warmup", "1", "--grace", "1",
                    "--setting", "request_timeout_s=3",
                    "--fault", "kill:kafka@2s", "--out", str(tmp_path))  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    (event,) = run["faults"]
    assert event["what"].startswith("the Kafka broker (Tansu, pid")
    assert "killed with SIGKILL" in event["what"]
    # sent = 400; each either completed or failed (not acknowledged) or lost in the broker
    assert run["sent"] == 400
    assert run["completed"] + failed_sends(run) + run["lost"] == 400
    assert run["expected"] == run["completed"] + run["lost"]
    assert not any(p["t_s"] > event["t_s"] + 1 and p["completed"] for p in run["timeline"])
    # on time: 1 + 4 s of load, a send's 3 s timeout, 2 x 1 s of grace, start and stop
    assert took < 90, took


@pytest.mark.integration
def test_the_embedded_kafka_broker_restarted_clients_ride_it_out(tmp_path: Path) -> None:
    done = hopbench("run", CHAIN, "--mode", "kafka", "--pattern", "fire-and-forget",
                    "--rate", "100", "--duration", "14", "--warmup", "1", "--grace", "2",
                    "--fault", "restart:kafka@2s", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    killed, again = run["faults"]
    assert "killed with SIGKILL" in killed["what"]
    assert "started again" in again["what"]
    assert "every message the old one held was lost" in again["what"]
    # memory only: what it held is lost, counted exactly; the clients came back
    assert run["sent"] == 1400
    assert run["expected"] == run["completed"] + run["lost"]
    assert run["completed"] + failed_sends(run) + run["lost"] == 1400
    assert sum(p["completed"] for p in run["timeline"] if p["t_s"] >= 11) > 0


@pytest.mark.integration
def test_a_rabbitmq_restart_loses_nothing_with_confirms_and_durable_queues(
    tmp_path: Path,
) -> None:
    with rabbit_node(tmp_path / "node") as node:
        argv = [sys.executable, "-m", "hopbench", "run", CHAIN, "--mode", "rabbitmq",
                "--pattern", "fire-and-forget", "--rate", "100", "--duration", "14",
                "--warmup", "1", "--grace", "5", "--rabbitmq-url", node.url,
                "--setting", "rabbitmq_confirms=true", "--setting", "rabbitmq_durable=true",
                "--setting", "request_timeout_s=30", "--out", str(tmp_path / "out")]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.strip().startswith("load:"):
                    break
            time.sleep(3)
            node.restart()  # stopped and started again, its data kept
            _, stderr = proc.communicate(timeout=240)
        finally:
            reap(proc)
    assert proc.returncode == 0, stderr
    run = only_run(tmp_path / "out")
    assert run["sent"] == 1400
    assert (run["completed"], run["lost"], failed_sends(run)) == (1400, 0, 0)
    assert (
        "reconnecting"
        in (tmp_path / "out")
        .joinpath("runs", next((tmp_path / "out" / "runs").iterdir()).name, "gateway-0.log")
        .read_text()
    )


def test_the_proxy_delays_each_chunk_in_order_and_drops_every_connection() -> None:
    async def scenario() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(100):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = LinkProxy("127.0.0.1", server.sockets[0].getsockname()[1])
        await proxy.start()
        try:
            url = proxy.url_for("amqp://u:p@127.0.0.1:5672/vh?heartbeat=5")
            assert url == f"amqp://u:p@127.0.0.1:{proxy.listen_port}/vh?heartbeat=5"
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)

            async def round_trip(data: bytes) -> float:
                started = time.monotonic()
                writer.write(data)
                assert await reader.readexactly(len(data)) == data
                return time.monotonic() - started

            assert await round_trip(b"a") < 0.1
            proxy.latency_s = 0.1  # each way: 0.2 s a round trip
            assert 0.2 <= await round_trip(b"bc") < 0.4
            proxy.latency_s = 0.0
            assert await round_trip(b"d") < 0.1
            assert (proxy.opened, proxy.drop()) == (1, 1)
            assert await reader.read(1) == b""  # the client sees its connection end
            writer.close()
            await proxy.await_opened(2, 0.05)  # nobody came back: it gives up on time
            assert proxy.open_links == 0
        finally:
            await proxy.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_rabbitmq_connection_drop_with_confirms_loses_nothing(tmp_path: Path) -> None:
    done = hopbench("run", CHAIN, "--mode", "rabbitmq", "--pattern", "fire-and-forget",
                    "--rate", "100", "--duration", "4", "--warmup", "1", "--grace", "2",
                    "--setting", "rabbitmq_confirms=true", "--fault", "drop:rabbitmq@2s",
                    "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    assert (run["status"], run["failure"]) == ("ok", None)
    dropped, again = run["faults"]
    # three connections: the load worker's, the gateway's and the worker's
    assert dropped["what"] == "every connection to RabbitMQ (3) was dropped at the proxy"
    assert 2.0 <= dropped["t_s"] < 2.5
    assert again["what"].startswith("3 of 3 connections to RabbitMQ opened again within ")
    assert any(n.startswith(f"t={dropped['t_s']:.2f} s: every connection") for n in run["notes"])
    # with confirms a publish is sent again until confirmed: nothing lost, none failed
    assert run["sent"] == 400
    assert (run["completed"], run["lost"], failed_sends(run)) == (400, 0, 0)
    log = next((tmp_path / "runs").iterdir()).joinpath("gateway-0.log").read_text()
    assert "RabbitMQ connection lost; reconnecting" in log
    assert "RabbitMQ connection recovered (1)" in log


@pytest.mark.integration
def test_a_delay_on_rabbitmq_shows_in_the_seconds_it_covers_and_not_after(
    tmp_path: Path,
) -> None:
    done = hopbench("run", CHAIN, "--mode", "rabbitmq", "--rate", "50", "--duration", "6",
                    "--warmup", "1", "--grace", "2",
                    "--fault", "delay:rabbitmq@2s:2s+100ms", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    began, ended = run["faults"]
    assert began["what"] == "every chunk to and from RabbitMQ is held 100 ms (each way) for 2 s"
    assert ended["what"] == "the delay on the connections to RabbitMQ ended"
    assert 3.9 < ended["t_s"] < 4.5
    assert (run["sent"], run["completed"], run["lost"]) == (300, 300, 0)
    p50 = {p["t_s"]: p["p50_us"] for p in run["timeline"]}
    # a round trip crosses the proxy 8 times (2 hops, each a request and a reply,
    # each through the broker): 800 ms more; before and after, none of it
    assert p50[3] > p50[0] + 600_000, p50
    assert p50[5] < p50[0] + 200_000, p50
