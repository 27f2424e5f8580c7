"""The data-format lever: the envelope as protobuf or JSON, compressed per edge, with
text or random payloads, and the bytes on the wire per message in the results.

The runs send each message over several edges of one mode at once, each edge with its
own encoding and compression, so the sizes compare within one run: compressing text
shrinks what is written, compressing random bytes does not, and JSON is larger than
protobuf. In memory and over the real transports (the local RabbitMQ, Tansu).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pamqp.commands import Basic

from hopbench import clock
from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, RunSpec, Settings
from hopbench.config.suite import load_suite
from hopbench.config.topology import LOADGEN, Edge
from hopbench.errors import ConfigError, TransportError
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.results.schema import Results, RunResult, WireResult
from hopbench.results.terminal import terminal_summary
from hopbench.transports import codec, provisioning
from hopbench.transports.context import TransportContext
from hopbench.transports.rabbitmq import RabbitMqTransport, queue_name
from tests.inprocess import Brokers, run_in_process

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = 2000  # the payload dominates the envelope: what compresses is the payload


def fanout(mode: str, variants: dict[str, str]) -> str:
    """One message from `a` to one sink per variant, each edge with its own settings."""
    sinks = "\n".join(f"  {name}: {{}}" for name in variants)
    edges = "\n".join(
        f"  - {{from: a, to: {name}, mode: {mode}, pattern: fire-and-forget, "
        f"settings: {{{settings}}}}}"
        for name, settings in variants.items()
    )
    return (
        f"name: format\nservices:\n  a: {{work: {{reply_bytes: {PAYLOAD}}}}}\n{sinks}\n"
        f"edges:\n  - {{from: loadgen, to: a, mode: http}}\n{edges}\n"
    )


VARIANTS = {
    "plain": "",
    "gz": "compression: gzip",
    "zs": "compression: zstd",
    "js": "encoding: json, compression: none",
}
KAFKA_VARIANTS = {"plain": "", "gz": "compression: gzip", "js": "encoding: json"}


def _run(tmp_path: Path, text: str, brokers: Brokers, content: str) -> RunResult:
    path = tmp_path / f"format-{content}.yaml"
    path.write_text(text)
    topology = load_topology(path)
    load = LoadSpec(rate=40, duration_s=0.5, warmup_s=0.2, payload_bytes=PAYLOAD)
    settings = Settings(payload_content=content)
    result = asyncio.run(run_in_process(topology, load, brokers, settings, settle_s=5))
    assert (result.lost, result.errors) == (0, 0)
    assert result.completed == result.expected
    return result


def _wire(result: RunResult) -> dict[str, WireResult]:
    found = {e.name.split("->")[1]: e.wire for e in result.edges}
    assert all(w is not None for w in found.values()), found
    return {k: w for k, w in found.items() if w is not None}


def encoded(wire: WireResult) -> float:
    assert wire.encoded_per_message is not None
    return wire.encoded_per_message


def written(wire: WireResult) -> float:
    assert wire.wire_per_message is not None, "the size written was not seen"
    return wire.wire_per_message


def check_text_sizes(result: RunResult) -> dict[str, WireResult]:
    """Every message counted once per edge; gzip and zstd shrink text to under 0.6 of
    its size; JSON is larger than protobuf; the HTTP entry's replies are counted."""
    text = _wire(result)
    sent = result.sent + result.warmup.sent  # bytes are counted over the whole run
    for name, wire in text.items():
        assert wire.messages == sent, name
        assert wire.wire_messages == wire.messages, name  # every size seen
    assert encoded(text["plain"]) == encoded(text["gz"])
    assert written(text["gz"]) < 0.6 * written(text["plain"])
    assert encoded(text["js"]) > encoded(text["plain"])
    if "zs" in text:
        assert written(text["zs"]) < 0.6 * written(text["plain"])
    entry = text["a"]  # HTTP request-reply
    assert entry.replies == sent
    assert entry.reply_encoded_per_message is not None
    assert entry.reply_encoded_per_message > PAYLOAD
    return text


def test_text_shrinks_and_json_is_larger_in_memory(tmp_path: Path) -> None:
    check_text_sizes(_run(tmp_path, fanout("rabbitmq", VARIANTS), Brokers(), "text"))


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["http", "rabbitmq", "kafka"])
def test_text_shrinks_and_json_is_larger_over(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    brokers = Brokers(
        kafka=request.getfixturevalue("kafka") if mode == "kafka" else None,
        rabbitmq_url=request.getfixturevalue("rabbitmq_url") if mode == "rabbitmq" else None,
        real=True,
    )
    # Kafka: fewer sinks (each consumer group takes seconds to join)
    variants = KAFKA_VARIANTS if mode == "kafka" else VARIANTS
    check_text_sizes(_run(tmp_path, fanout(mode, variants), brokers, "text"))
    if mode == "kafka":  # batch compression: random does not shrink either
        two = {k: v for k, v in variants.items() if k in ("plain", "gz")}
        random = _wire(_run(tmp_path, fanout(mode, two), brokers, "random"))
        assert written(random["gz"]) > 0.97 * written(random["plain"])


def test_random_does_not_shrink(tmp_path: Path, brokers: Brokers) -> None:
    random = _wire(_run(tmp_path, fanout("rabbitmq", VARIANTS), brokers, "random"))
    for name in ("gz", "zs"):
        assert written(random[name]) > 0.97 * written(random["plain"]), name
    # JSON carries random bytes as base64: a third larger
    assert encoded(random["js"]) > 1.3 * encoded(random["plain"])


@pytest.mark.integration
def test_grpc_compresses_with_gzip_and_says_its_size_is_not_seen(tmp_path: Path) -> None:
    """Real transports only (in memory there is no gRPC)."""
    text = (
        "name: g\nservices:\n  a: {}\n  b: {}\n  c: {}\nedges:\n"
        "  - {from: loadgen, to: a, mode: grpc}\n"
        "  - {from: a, to: b, mode: grpc, pattern: fire-and-forget}\n"
        "  - {from: a, to: c, mode: grpc, pattern: fire-and-forget,"
        " settings: {compression: gzip}}\n"
    )
    result = _run(tmp_path, text, Brokers(real=True), "text")
    wire = _wire(result)
    assert wire["b"].wire_per_message == wire["b"].encoded_per_message  # as serialized
    assert wire["c"].wire_messages == 0
    assert wire["c"].wire_per_message is None
    assert wire["c"].encoded_per_message == wire["b"].encoded_per_message
    shown = terminal_summary(Results(runs=[result]))
    assert "protobuf gzip" in shown
    assert "n/m written" in shown


# --- the codec ---------------------------------------------------------------------


def _envelope(payload: bytes) -> Envelope:
    env = Envelope(id=7, flow="f", seq=3, intended_ns=1 << 50, trace_id=(1 << 64) - 1,
                   warmup=True, run_id="r", payload=payload)  # fmt: skip
    env.hops.add(edge=1, service="a", replica=2, received_ns=5, returned_ns=(1 << 62))
    return env


@pytest.mark.parametrize("content", ["random", "text"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_the_envelope_comes_back_whole(content: str, encoding: str, compression: str) -> None:
    env = _envelope(codec.make_payload(content, 300))
    body = codec.compress(codec.encode(env, encoding), compression)
    assert codec.decode(codec.decompress(body, compression), encoding) == env


def test_json_carries_text_as_a_string_and_bytes_as_base64() -> None:
    text = codec.encode(_envelope(b"hello world"), "json")
    assert b'"payload_text":"hello world"' in text
    binary = codec.encode(_envelope(b"\xff\x00"), "json")
    assert b'"payload":"/wA="' in binary


def test_text_payload_is_ascii_of_the_size_asked_and_the_same_each_time() -> None:
    one = codec.make_payload("text", 1000)
    assert len(one) == 1000
    assert one.isascii()
    assert one == codec.make_payload("text", 1000)
    assert codec.make_payload("text", 0) == b""
    assert len(codec.make_payload("random", 1000)) == 1000


@pytest.mark.parametrize("content", ["random", "text"])
def test_each_message_gets_a_payload_of_its_own(content: str) -> None:
    """Else a Kafka batch would compress one payload repeated, which no service sends."""
    payloads = codec.Payloads(content, 3000)
    seen = [payloads.next() for _ in range(codec.POOL_BYTES // 3000)]
    assert {len(p) for p in seen} == {3000}
    assert len(set(seen)) == len(seen)
    assert codec.Payloads(content, 0).next() == b""


@pytest.mark.parametrize(
    ("body", "encoding", "compression"),
    [(b"\x00not protobuf\xff", "protobuf", "none"), (b"[1]", "json", "none"),
     (b'{"nofield": 1}', "json", "none"), (b"plain", "protobuf", "gzip"),
     (b"plain", "protobuf", "zstd"), (b"x", "protobuf", "brotli")],
)  # fmt: skip
def test_what_is_not_an_envelope_is_a_transport_error(
    body: bytes, encoding: str, compression: str
) -> None:
    with pytest.raises(TransportError):
        codec.decode(codec.decompress(body, compression), encoding)


# --- validation ---------------------------------------------------------------------


def _topology(tmp_path: Path, settings: str, mode: str = "grpc") -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nservices:\n  a: {}\n  b: {}\nedges:\n"
        "  - {from: loadgen, to: a, mode: http}\n"
        f"  - {{from: a, to: b, mode: {mode}, settings: {{{settings}}}}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("encoding: json", "line 7: edges[1].settings: encoding json over grpc cannot be: "
         "gRPC carries the envelope as protobuf"),
        ("compression: zstd", "compression zstd over grpc cannot be: grpcio compresses with "
         "gzip or deflate, not zstd"),
        ("compression: brotli", "edges[1].settings.compression: Input should be 'none', "
         "'gzip' or 'zstd'"),
        ("encoding: xml", "edges[1].settings.encoding: Input should be 'protobuf' or 'json'"),
    ],
)  # fmt: skip
def test_what_a_mode_cannot_carry_is_refused_in_a_sentence(
    tmp_path: Path, settings: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_topology(_topology(tmp_path, settings))
    assert expected in str(caught.value)


def test_a_run_wide_setting_a_grpc_edge_cannot_carry_is_refused(tmp_path: Path) -> None:
    topology = load_topology(_topology(tmp_path, ""))
    topology.check_settings(Settings(compression="gzip"))  # gzip: grpcio has it
    with pytest.raises(ConfigError, match="edge a->b: encoding json over grpc cannot be"):
        topology.check_settings(Settings(encoding="json"))
    # --mode moves an edge with JSON to gRPC: refused where the file is read
    with pytest.raises(ConfigError, match="encoding json over grpc"):
        load_topology(_topology(tmp_path, "encoding: json", mode="http"), mode="grpc")


def test_the_format_suite_is_valid() -> None:
    _suite, cells, settings = load_suite(ROOT / "suites" / "levers" / "format.yaml")
    assert settings.payload_content == "text"
    assert len({c.variant for c in cells}) == 7  # each crossed with two payload sizes
    assert len(cells) == 14


# --- a message that is not an envelope ------------------------------------------------


@pytest.mark.integration
def test_a_body_not_compressed_as_it_says_is_rejected_and_consuming_goes_on(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\nservices:\n  a: {}\nedges:\n"
        "  - {from: loadgen, to: a, mode: rabbitmq, settings: {compression: gzip}}\n"
    )
    topology = load_topology(path)
    spec = RunSpec(
        run_id=uuid.uuid4().hex[:8],
        topology=topology.to_dict(),
        load=LoadSpec(rate=1, duration_s=1, warmup_s=0, payload_bytes=10),
        rabbitmq_url=rabbitmq_url,
    )
    edge = topology.entry_edge
    got: list[Envelope] = []

    async def handler(_edge: Edge, env: Envelope, _arrived_ns: int) -> Envelope | None:
        got.append(env)
        return None

    async def scenario() -> tuple[int, str]:
        broker = RabbitMqBroker(rabbitmq_url)
        await broker.connect()
        server = RabbitMqTransport(TransportContext.of(spec, "a", 0))
        client = RabbitMqTransport(TransportContext.of(spec, LOADGEN, 0))
        try:
            await broker.provision(provisioning(spec))
            server.serve(edge, handler)
            await server.start()
            await client.start()
            queue = queue_name(spec.run_id, edge)
            channel = await client._connection.channel()  # type: ignore[union-attr]
            stranger = Basic.Properties(content_encoding="gzip")  # says gzip, and is not
            await channel.basic_publish(b"not gzip", routing_key=queue, properties=stranger)
            now = clock.now_ns()  # a possible envelope: admission takes it
            await client.publish(
                edge, Envelope(run_id=spec.run_id, seq=1, intended_ns=now, sent_ns=now)
            )
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.05)
        finally:
            await client.close()
            await server.close()
            await broker.close()  # deletes the run's queue
        return server.rejected, server.admission.first or ""

    rejected, first = asyncio.run(scenario())
    assert [env.seq for env in got] == [1]  # the envelope after it still arrived
    assert rejected == 1
    assert first.startswith("loadgen->a: not gzip data (8 bytes)")
