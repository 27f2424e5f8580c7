"""Garbage survived and counted: whatever arrives on an in-edge or a reply path that is
not an envelope of the run — undecodable, empty, another run's, or forged with the
run's id but impossible for its schedule — is rejected, counted exactly, dead-lettered
where a broker carried it, and changes nothing the run measured."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from hopbench import clock
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.topology import Topology
from hopbench.proto.hopbench_pb2 import Envelope, Hop
from hopbench.results.schema import RunResult
from hopbench.transports import kafka as kafka_mode
from hopbench.transports import rabbitmq as rabbit_mode
from hopbench.transports.admission import SLACK_NS, Admission, seq_limit
from tests.conftest import reap
from tests.inprocess import Brokers, KafkaBroker, Live, run_in_process

LOAD = LoadSpec(rate=100, duration_s=1.5, warmup_s=0.3, payload_bytes=10)
FORGED_AGO_S = 1145  # the forged envelope's intended send, this long before now


def garbage(run_id: str) -> dict[str, bytes]:
    """One of each kind of message a process must reject, by what it is."""
    now = clock.now_ns()
    forged = Envelope(worker=0, seq=5, run_id=run_id, payload=b"x")
    forged.intended_ns = forged.sent_ns = now - FORGED_AGO_S * 10**9
    return {
        "undecodable": b"\xff\xfe not protobuf at all",
        "bad utf-8": b"\x4a\x03\xff\xfe\xfd",  # run_id (field 9) with invalid UTF-8
        "empty": b"",
        "foreign": Envelope(run_id="another", worker=0, seq=1, intended_ns=now).SerializeToString(),
        "forged, old": forged.SerializeToString(),
        "forged, sequence": Envelope(
            run_id=run_id, worker=0, seq=10**12, intended_ns=now, sent_ns=now
        ).SerializeToString(),
        "forged, worker": Envelope(
            run_id=run_id, worker=7, seq=1, intended_ns=now, sent_ns=now
        ).SerializeToString(),
    }


# ---- the rules, without a broker ----


def test_every_impossible_envelope_is_rejected_with_why_and_real_ones_pass() -> None:
    load = LoadSpec(rate=1000, duration_s=10, warmup_s=2, payload_bytes=10, workers=2)
    admission = Admission("run1", load)
    now = clock.now_ns()
    admission.open(now - 3 * 10**9)  # the schedule started 3 s ago
    real = Envelope(run_id="run1", worker=1, seq=2000, intended_ns=now - 10**6, sent_ns=now)
    real.hops.add(arrived_ns=now - 500, received_ns=now - 400)
    assert admission.screen(real.SerializeToString(), now, "e") == real

    def why(**fields: Any) -> str:
        env = Envelope()
        env.CopyFrom(real)
        for name, value in fields.items():
            setattr(env, name, value)
        found = admission.screen(env.SerializeToString(), now, "a->b")
        assert isinstance(found, str)
        return found

    assert why(run_id="run2") == "of another run ('run2', this is 'run1')"
    assert why(worker=2) == "from load worker 2; the run has 2"
    limit = seq_limit(load)
    assert why(seq=limit).startswith(f"sequence number {limit}: ")
    assert why(intended_ns=now - 3 * 10**9 - SLACK_NS - 10**9) == (
        "intended time 1.000 s before the schedule's start"
    )
    assert why(intended_ns=now + SLACK_NS + 2 * 10**9) == (
        "intended time 2.000 s after what is possible"
    )
    assert why(sent_ns=now - FORGED_AGO_S * 10**9).startswith("sent time ")
    assert admission.screen(b"", now, "e") == "an empty message"
    undecodable = admission.screen(b"\xff\xff\xff", now, "e")
    assert isinstance(undecodable, str)
    assert undecodable.startswith("not a hopbench envelope")
    assert admission.rejected == 8  # every rejection above, counted once
    assert admission.first == "a->b: of another run ('run2', this is 'run1')"


def test_a_message_late_after_the_schedule_is_still_taken() -> None:
    """Under load a worker sends behind its schedule and hops stamp long after its end:
    only the intended time is held to the schedule."""
    admission = Admission("r", LOAD)
    now = clock.now_ns()
    start = now - 30 * 10**9  # the schedule (1.8 s) ended 28 s ago
    admission.open(start)
    end = start + int((LOAD.warmup_s + LOAD.duration_s) * 1e9)
    late = Envelope(run_id="r", worker=0, seq=149, intended_ns=end - 10**7, sent_ns=end + 10**9)
    late.hops.add(arrived_ns=now - 10**9, received_ns=now - 10**8)
    assert admission.check(late, now) is None
    late.intended_ns = end + 2 * SLACK_NS
    assert admission.check(late, now) == "intended time 1.000 s after what is possible"


def test_the_sequence_bound_is_above_any_schedule_a_seed_draws() -> None:
    load = LoadSpec(rate=500, duration_s=10, warmup_s=2, payload_bytes=1, workers=3)
    mean = 12 * 500 / 3
    assert mean < seq_limit(load) < mean + 11 * mean**0.5 + 16
    closed = LoadSpec(rate=1, duration_s=10, warmup_s=0, payload_bytes=1, concurrency=4)
    assert seq_limit(closed) == 10 * 10**6 + 1


def test_before_the_schedule_is_known_times_are_held_to_its_length_around_now() -> None:
    admission = Admission("r", LOAD)  # not opened: a service before its Start
    now = clock.now_ns()
    ok = Envelope(run_id="r", worker=0, seq=3, intended_ns=now - 10**9, sent_ns=now - 10**9)
    assert admission.check(ok, now) is None
    old = Envelope(run_id="r", worker=0, seq=3, intended_ns=now - FORGED_AGO_S * 10**9)
    assert admission.check(old, now) is not None
    hop = Envelope(run_id="r", worker=0, seq=3, intended_ns=now, hops=[Hop(arrived_ns=now * 2)])
    assert admission.check(hop, now) == "a hop's arrival time " + (
        f"{(now - SLACK_NS) / 1e9:.3f} s after what is possible"
    )


# ---- real transports, real brokers ----


def _topology(tmp_path: Path, mode: str) -> Topology:
    path = tmp_path / f"garbage-{mode}.yaml"
    path.write_text(
        f"name: garbage\nservices:\n  front: {{}}\nedges:\n"
        f"  - {{from: loadgen, to: front, mode: {mode}, pattern: request-reply}}\n"
    )
    return load_topology(path)


def _unaffected(result: RunResult) -> None:
    """The run measured what it would have without the garbage."""
    assert result.status == "ok", result.failure
    assert result.sent == LOAD.rate * LOAD.duration_s
    assert result.completed == result.expected == result.sent
    assert (result.lost, result.duplicated, result.errors, result.late_replies) == (0, 0, 0, 0)
    assert (result.negative_latencies, result.out_of_range) == (0, 0)
    # replies over a connection pool overtake each other; a recorded forged sequence
    # number beyond the schedule would make every later message out of order
    assert result.out_of_order < result.sent // 2
    assert result.latency_us.max < 10 * 10**6  # seconds at worst on a busy machine, never 1,145


def _rejected(result: RunResult) -> dict[str, int]:
    return {p.name: p.rejected for p in result.processes}


def _run(
    topology: Topology,
    brokers: Brokers,
    during: Callable[[Live], Awaitable[None]],
    settings: Settings | None = None,
) -> RunResult:
    return asyncio.run(
        run_in_process(topology, LOAD, brokers, settings=settings, settle_s=5.0, during=during)
    )


async def _after_load_started() -> None:
    await asyncio.sleep(LOAD.warmup_s + 0.3)  # injected mid-run, between real messages


@pytest.mark.integration
def test_kafka_garbage_on_an_in_edge_and_a_reply_topic_is_dead_lettered_and_counted(
    tmp_path: Path, kafka: KafkaBroker
) -> None:
    topology = _topology(tmp_path, "kafka")
    edge = topology.entry_edge
    read: list[tuple[bytes, dict[str, bytes]]] = []
    sent: dict[str, bytes] = {}

    async def inject(live: Live) -> None:
        run_id = live.spec.run_id
        sent.update(garbage(run_id))
        await _after_load_started()
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for topic in (
                kafka_mode.topic_name(run_id, edge),
                kafka_mode.reply_topic(run_id, "loadgen", 0),
            ):
                for body in sent.values():
                    await producer.send_and_wait(topic, body)
            await producer.send_and_wait(kafka_mode.topic_name(run_id, edge), None, key=b"k")
        finally:
            await producer.stop()
        read.extend(await _read_topic(kafka.bootstrap, kafka_mode.dead_letter_topic(run_id), 15))

    result = _run(topology, Brokers(kafka=kafka, real=True), inject)
    _unaffected(result)
    kinds = len(sent)
    assert _rejected(result) == {"front/0": kinds + 1, "loadgen/0": kinds}
    assert result.rejected == 2 * kinds + 1
    assert any(
        note.startswith(f"{2 * kinds + 1} message(s) received were rejected")
        for note in result.notes
    )
    # every rejected record is in the dead-letter topic, unchanged, saying where and why
    assert sorted(body for body, _ in read) == sorted([*sent.values(), *sent.values(), b""])
    by = sorted(h["hb-read-by"].decode() for _, h in read)
    assert by == ["front-0"] * (kinds + 1) + ["loadgen-0"] * kinds
    reasons = {h["hb-rejected"].decode() for _, h in read}
    assert "an empty message" in reasons
    assert any(r.startswith("intended time 114") for r in reasons), reasons


async def _read_topic(
    bootstrap: str, topic: str, wanted: int
) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=5)
    await consumer.start()
    found: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 20
        while len(found) < wanted and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found += [(r.value or b"", dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


@pytest.mark.integration
def test_rabbitmq_garbage_on_an_in_edge_and_a_reply_queue_is_dead_lettered_and_counted(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    topology = _topology(tmp_path, "rabbitmq")
    edge = topology.entry_edge
    read: list[tuple[bytes, dict[str, Any]]] = []
    sent: dict[str, bytes] = {}

    async def inject(live: Live) -> None:
        run_id = live.spec.run_id
        sent.update(garbage(run_id))
        await _after_load_started()
        reply_queue = live.workers[0].transport._reply_to  # type: ignore[attr-defined]
        assert reply_queue.startswith("amq.gen-")
        connection = await aiormq.connect(rabbitmq_url)
        try:
            channel = await connection.channel()
            for queue in (rabbit_mode.queue_name(run_id, edge), reply_queue):
                for body in sent.values():
                    await channel.basic_publish(body, routing_key=queue)
            read.extend(await _read_queue(channel, rabbit_mode.dead_letter_name(run_id), 14))
        finally:
            await connection.close()

    settings = Settings(rabbitmq_reply="queue")  # a reply queue another client can reach
    result = _run(topology, Brokers(rabbitmq_url=rabbitmq_url, real=True), inject, settings)
    _unaffected(result)
    kinds = len(sent)
    assert _rejected(result) == {"front/0": kinds, "loadgen/0": kinds}
    assert result.rejected == 2 * kinds
    assert sorted(body for body, _ in read) == sorted([*sent.values(), *sent.values()])
    by = sorted(str(h["hb-read-by"]) for _, h in read)
    assert by == ["front-0"] * kinds + ["loadgen-0"] * kinds
    where = {str(h["hb-read-from"]) for _, h in read}
    assert where == {edge.name, f"replies ({reply_queue_of(read)})"}


def reply_queue_of(read: list[tuple[bytes, dict[str, Any]]]) -> str:
    """The reply queue's name, as the dead-letter headers give it."""
    for _, headers in read:
        where = str(headers["hb-read-from"])
        if where.startswith("replies ("):
            return where[len("replies (") : -1]
    raise AssertionError("no rejected reply")


async def _read_queue(
    channel: aiormq.abc.AbstractChannel, queue: str, wanted: int
) -> list[tuple[bytes, dict[str, Any]]]:
    found: list[tuple[bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + 20
    while len(found) < wanted and time.monotonic() < deadline:
        message = await channel.basic_get(queue, no_ack=True)
        if message.delivery_tag is None:  # the queue is empty for now
            await asyncio.sleep(0.05)
            continue
        found.append((message.body, dict(message.header.properties.headers or {})))
    return found


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_http_and_grpc_refuse_garbage_to_its_sender_and_count_it(tmp_path: Path, mode: str) -> None:
    topology = _topology(tmp_path, mode)
    edge = topology.entry_edge
    answers: list[str] = []
    sent: dict[str, bytes] = {}

    async def inject(live: Live) -> None:
        sent.update(garbage(live.spec.run_id))
        await _after_load_started()
        address = live.spec.endpoints[mode]["front"][0]
        send = _post if mode == "http" else _call
        for body in sent.values():
            answers.append(await send(address, edge.index, body))

    result = _run(topology, Brokers(real=True), inject)
    _unaffected(result)
    assert _rejected(result) == {"front/0": len(sent), "loadgen/0": 0}
    refused = "400" if mode == "http" else "INVALID_ARGUMENT"
    assert all(a.startswith(f"{refused} rejected: ") for a in answers), answers
    assert any("of another run ('another'" in a for a in answers)


async def _post(address: str, index: int, body: bytes) -> str:
    url = f"http://{address}/edges/{index}"
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        return f"{response.status} {(await response.read()).decode(errors='replace')}"


async def _call(address: str, index: int, body: bytes) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/hopbench.Relay/Call")  # raw bytes both ways
        try:
            await call(body, metadata=(("hb-edge", str(index)),), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name} {exc.details()}"
    return "OK"


# ---- the whole product: a garbage record on a Kafka reply topic, from the CLI ----


@pytest.mark.integration
def test_a_garbage_record_on_a_kafka_reply_topic_does_not_stop_the_run(
    tmp_path: Path, kafka: KafkaBroker
) -> None:
    """The run in the issue: one record on the load worker's reply topic used to stop
    its completions; now the run ends ok, every message completed, the record counted."""
    path = tmp_path / "garbage.yaml"
    path.write_text(
        "name: garbage\nservices:\n  front: {}\nedges:\n"
        "  - {from: loadgen, to: front, mode: kafka, pattern: request-reply}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopbench", "run", str(path), "--rate", "100", "--duration",
         "3", "--warmup", "1", "--workers", "1", "--kafka-bootstrap", kafka.bootstrap,
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_id = _run_id_of(out, proc)
        topic = kafka_mode.reply_topic(run_id, "loadgen", 0)
        asyncio.run(_produce_when_there(kafka.bootstrap, topic, b"\xff garbage"))
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        reap(proc)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    data = json.loads((out / "results.json").read_text())
    (run,) = data["runs"]
    assert (run["status"], run["lost"], run["errors"], run["rejected"]) == ("ok", 0, 0, 1)
    assert run["completed"] == run["sent"] == 300
    (loadgen,) = [p for p in run["processes"] if p["name"] == "loadgen/0"]
    assert loadgen["rejected"] == 1
    assert loadgen["first_rejected"].startswith(f"replies ({topic}[0]@")
    assert "rejected 1" in stdout


def _run_id_of(out: Path, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((out / "runs").glob("garbage-kafka-*")) if (out / "runs").exists() else []
        if found:
            return found[0].name.rsplit("-", 1)[1]
        time.sleep(0.05)
    raise AssertionError(f"no run folder appeared: {proc.poll()}")


async def _produce_when_there(bootstrap: str, topic: str, body: bytes) -> None:
    """Produce once the run has created the topic (and its load is under way)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        deadline = time.monotonic() + 60
        while topic not in (await producer.client.fetch_all_metadata()).topics():
            assert time.monotonic() < deadline, f"{topic} never appeared"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # into the measured window: replies are flowing
        await producer.send_and_wait(topic, body)
    finally:
        await producer.stop()
