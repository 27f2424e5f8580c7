"""The client libraries as a setting (http_client, rabbitmq_client): each completes a run
with exact counts, the choice is recorded with the run, and a bad one is a sentence."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.settings import http_library, unsupported_lever
from hopbench.config.topology import Edge, Topology
from hopbench.errors import ConfigError, TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.transports import make_transports
from hopbench.transports.base import Transport
from hopbench.transports.context import TransportContext
from hopbench.transports.httpclients import HTTP_CLIENTS, make_http_client
from hopbench.transports.rabbitmq import RabbitMqTransport
from hopbench.transports.rabbitmq_pika import PikaRabbitMqTransport
from hopbench.transports.split import SplitByLibrary
from tests.inprocess import Brokers, run_in_process

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "suites" / "levers" / "clients.yaml"

CHAIN = """\
name: chain
services:
  gateway: {}
  worker: {}
edges:
  - {from: loadgen, to: gateway, mode: MODE, settings: {SETTING}}
  - {from: gateway, to: worker, mode: rabbitmq}
"""


def chain(tmp_path: Path, mode: str, setting: str) -> Path:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN.replace("MODE", mode).replace("SETTING", setting))
    return path


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "allowed"),
    [("http_client: curl", "'auto', 'aiohttp', 'httpx' or 'pyreqwest'"),
     ("rabbitmq_client: kombu", "'aiormq' or 'pika'")],
)  # fmt: skip
def test_an_unknown_client_names_the_field_and_the_choices(
    tmp_path: Path, setting: str, allowed: str
) -> None:
    mode = setting.split("_")[0]
    with pytest.raises(ConfigError) as info:
        load_topology(chain(tmp_path, mode, setting))
    message = str(info.value)
    assert f"line 6: edges[0].settings.{setting.split(':')[0]}" in message
    assert allowed in message


def test_a_client_of_another_mode_is_refused_with_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(chain(tmp_path, "kafka", "http_client: httpx"))
    assert "edges[0].settings.http_client: chooses a client of http edges, and this edge is " in (
        str(info.value)
    )


def test_an_unknown_client_on_the_command_line_is_an_error_not_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", str(ROOT / "topologies" / "chain.yaml"),
         "--setting", "http_client=curl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--setting http_client=curl: " in done.stderr
    assert "'auto', 'aiohttp', 'httpx' or 'pyreqwest'" in done.stderr
    assert "Traceback" not in done.stderr


def test_one_factory_builds_the_library_an_edge_names(tmp_path: Path) -> None:
    async def build(name: str) -> type:
        client = make_http_client(Settings(http_client=name))
        await client.aclose()
        return type(client)

    for name, cls in HTTP_CLIENTS.items():
        assert asyncio.run(build(name)) is cls
    topology = load_topology(chain(tmp_path, "rabbitmq", "rabbitmq_client: pika"))
    gateway = context(topology, "gateway")
    edges = [*topology.in_edges("gateway"), *topology.out_edges("gateway")]
    split = make_transports(gateway, edges)["rabbitmq"]
    assert isinstance(split, SplitByLibrary)  # in on pika, out on aiormq: one of each
    assert {type(p) for p in split.parts.values()} == {PikaRabbitMqTransport, RabbitMqTransport}
    loadgen = make_transports(context(topology, "loadgen"), [topology.entry_edge])
    assert type(loadgen["rabbitmq"]) is PikaRabbitMqTransport  # the load worker's, unaware


def test_by_default_http_runs_pyreqwest_unless_a_lever_needs_aiohttp() -> None:
    assert http_library(Settings()) == "pyreqwest"
    for lever in ({"tls": True}, {"keepalive": False}, {"compression": "gzip"}):
        settings = Settings.model_validate(lever)
        assert http_library(settings) == "aiohttp", lever
        assert unsupported_lever("http", settings) is None, lever  # never a new refusal
    for name in ("aiohttp", "httpx", "pyreqwest"):  # a library named is the one that runs
        assert http_library(Settings.model_validate({"http_client": name})) == name
    refused = unsupported_lever("http", Settings(http_client="pyreqwest", tls=True))
    assert refused is not None
    assert "use aiohttp or auto" in refused[1]


def two_clients(tmp_path: Path) -> Topology:
    """A chain over HTTP whose second edge opens a connection per request."""
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\nservices: {gateway: {}, worker: {}}\nedges:\n"
        "  - {from: loadgen, to: gateway, mode: http}\n"
        "  - {from: gateway, to: worker, mode: http, settings: {keepalive: false}}\n"
    )
    return load_topology(path)


def test_each_edge_gets_its_own_choice_of_client(tmp_path: Path) -> None:
    topology = two_clients(tmp_path)
    plain, new_connections = topology.edges
    ctx = context(topology, "gateway")

    async def library(edge: Edge) -> str:
        client = make_http_client(ctx.settings_for(edge))
        await client.aclose()
        return client.library

    assert asyncio.run(library(plain)) == "pyreqwest"
    assert asyncio.run(library(new_connections)) == "aiohttp"


@pytest.mark.integration
def test_the_client_each_edge_ran_is_recorded(tmp_path: Path) -> None:
    load = LoadSpec(rate=100, duration_s=0.6, warmup_s=0.2, payload_bytes=50)
    result = asyncio.run(run_in_process(two_clients(tmp_path), load, Brokers(real=True)))
    assert result.sent > 0
    assert result.completed == result.expected == result.sent
    assert (result.lost, result.errors) == (0, 0)
    assert [e.client for e in result.edges] == ["pyreqwest", "aiohttp"]
    assert result.settings["http_client"] == "auto"


def context(topology: Topology, service: str) -> TransportContext:
    return TransportContext(
        run_id="x",
        service=service,
        replica=0,
        topology=topology,
        rabbitmq_url="amqp://guest:guest@127.0.0.1:5672/",
    )


# --- pika, in-process against the real RabbitMQ -------------------------------------

PIKA = """\
name: pika
services:
  gateway: {}
  worker: {}
  audit: {}
edges:
  - {from: loadgen, to: gateway, mode: rabbitmq, pattern: PATTERN, settings: {ENTRY}}
  - {from: gateway, to: worker, mode: rabbitmq, pattern: PATTERN}
  - {from: gateway, to: audit, mode: rabbitmq, pattern: PATTERN}
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("pattern", "entry", "settings"),
    [
        ("request-reply", "rabbitmq_client: pika", {"rabbitmq_client": "pika"}),
        ("request-reply", "", {"rabbitmq_client": "pika", "rabbitmq_reply": "queue"}),
        ("fire-and-forget", "", {"rabbitmq_client": "pika", "rabbitmq_confirms": True}),
        ("publish-subscribe", "", {"rabbitmq_client": "pika", "prefetch": 5}),
        ("request-reply", "rabbitmq_client: aiormq", {"rabbitmq_client": "pika"}),  # split
    ],
)
def test_pika_carries_every_pattern_with_exact_counts(
    tmp_path: Path, rabbitmq_url: str, pattern: str, entry: str, settings: dict[str, Any]
) -> None:
    path = tmp_path / "pika.yaml"
    path.write_text(PIKA.replace("PATTERN", pattern).replace("ENTRY", entry))
    topology = load_topology(path)
    load = LoadSpec(rate=100, duration_s=0.6, warmup_s=0.2, payload_bytes=50)
    result = asyncio.run(
        run_in_process(
            topology,
            load,
            Brokers(rabbitmq_url=rabbitmq_url, real=True),
            Settings(**settings),
            settle_s=5,
        )
    )
    # one-way: worker and audit each complete every message; request-reply: the reply
    sinks = 1 if pattern == "request-reply" else 2
    assert result.sent > 0
    assert result.completed == result.expected == sinks * result.sent
    assert (result.lost, result.errors, result.duplicated) == (0, 0, 0)
    assert result.settings["rabbitmq_client"] == "pika"


# --- the suite: every client end to end, in processes -------------------------------


@pytest.mark.integration
def test_the_clients_suite_runs_every_client_with_exact_counts(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    suite = yaml.safe_load(SUITE.read_text())
    suite["topology"] = str(ROOT / "topologies" / "chain.yaml")
    suite["load"] = {"duration_s": 1, "warmup_s": 0.5, "grace_s": 3}
    suite["matrix"]["rates"] = [100]
    # the defaults (pyreqwest, aiormq) run in every other test: here the others, in processes
    assignments = suite["matrix"]["assignments"]
    for default in ("http-pyreqwest", "rabbitmq-aiormq"):
        del assignments[default]
    small = tmp_path / "clients.yaml"
    small.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "compare", str(small), "--out", str(out),
         "--rabbitmq-url", rabbitmq_url],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == list(suite["matrix"]["assignments"])
    for run in runs:
        assert run["sent"] > 0, run["variant"]
        assert run["completed"] == run["sent"], run["variant"]
        assert (run["lost"], run["errors"], run["duplicated"]) == (0, 0, 0), run["variant"]
        library = run["variant"].split("-")[1]
        setting = "http_client" if run["variant"].startswith("http") else "rabbitmq_client"
        assert {e["settings"][setting] for e in run["edges"]} == {library}, run["variant"]
        assert {e["client"] for e in run["edges"]} == {library}, run["variant"]  # what ran


# --- a fault: pika's connection closed by the broker --------------------------------


def close_connection_named(name: str) -> None:
    """Close one connection of ours on the shared broker, found by its name."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    pids = [line.split("\t")[0] for line in listed.stdout.splitlines() if name in line]
    assert len(pids) == 1, listed.stdout
    subprocess.run(
        ["rabbitmqctl", "-q", "close_connection", pids[0], "closed by a test"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip


async def publish_until_refused(transport: Transport, edge: Edge) -> None:
    for _ in range(50):  # until the connection's thread has seen the close
        await transport.publish(edge, Envelope(id=2))
        await asyncio.sleep(0.1)


@pytest.mark.integration
def test_a_pika_connection_closed_by_the_broker_fails_sends_in_words(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl beside the local RabbitMQ to close a connection")
    path = tmp_path / "pika.yaml"
    path.write_text(PIKA.replace("PATTERN", "fire-and-forget").replace("ENTRY", ""))
    topology = load_topology(path)
    run_id = uuid.uuid4().hex[:8]
    loadgen = TransportContext(
        run_id=run_id, service="loadgen", replica=0, topology=topology,
        settings=Settings(rabbitmq_client="pika", request_timeout_s=2), rabbitmq_url=rabbitmq_url,
    )  # fmt: skip
    edge = topology.entry_edge

    async def scenario() -> tuple[str, float]:
        transport = make_transports(loadgen, [edge])["rabbitmq"]
        assert isinstance(transport, PikaRabbitMqTransport)
        await transport.start()
        try:
            await transport.publish(edge, Envelope(id=1))  # no queue: the broker drops it
            await asyncio.to_thread(close_connection_named, transport.connection_name)
            with pytest.raises(TransportError) as info:
                await publish_until_refused(transport, edge)
            assert transport.errors == 1
            assert transport.first_error is not None
            assert "connection lost" in transport.first_error.message
        finally:
            began = time.monotonic()
            await transport.close()
        return str(info.value), time.monotonic() - began

    message, closing_s = asyncio.run(scenario())
    assert "RabbitMQ (pika)" in message
    assert closing_s < 2  # the thread has ended: nothing left to wait for
