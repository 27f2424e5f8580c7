"""The control protocol: every message survives the codec; a malformed line is a
ProtocolError that says what is wrong; a child answers a bad command line with an
Error and goes on serving; the orchestrator's end fails clearly on a bad event."""

from __future__ import annotations

import asyncio
import re

import pytest

from hopbench.control.child import Child
from hopbench.errors import HopbenchError, ProtocolError, RunError
from hopbench.loadgen.worker import WorkerReport as SendTally
from hopbench.measure.recorder import Recorder
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.protocol import messages
from hopbench.protocol.channel import ChildChannel
from hopbench.protocol.messages import (
    COMMANDS,
    EVENTS,
    Auth,
    Clock,
    ClockReply,
    Command,
    Configure,
    Error,
    Event,
    FirstError,
    Hello,
    LateAfter,
    Message,
    Progress,
    ProgressReply,
    Ready,
    Sample,
    Sampled,
    SecondSnapshot,
    ServiceReport,
    Shutdown,
    Start,
    Stop,
    Usage,
    WorkerReport,
    decode,
    decode_command,
    decode_event,
    encode,
)


def _recorder_json() -> dict[str, object]:
    recorder = Recorder({0: "loadgen"}, origin_ns=0)
    for seq in range(3):
        env = Envelope(worker=0, seq=seq, intended_ns=1_000, sent_ns=2_000)
        recorder.complete((0,), env, 5_000_000)
    return recorder.to_json()


def _sends() -> messages.SendSummary:
    tally = SendTally(worker=1, sent=5, first_measured_seq=2, last_sent_ns=1 << 62)
    tally.failed.add(3)
    return tally.summary()


USAGE = Usage(cpu_s=1.25, peak_rss_mb=48.5)
SAMPLES: dict[type[Message], list[Message]] = {
    Auth: [Auth(mac="9f" * 32)],
    Configure: [Configure("gateway", 2, {"run_id": "x", "load": {"rate": 1.5}}, -7_000)],
    Start: [Start(start_ns=10**12, origin_ns=10**12 + 10**9)],
    Progress: [Progress(), Progress(second=-3), Progress(second=12)],
    Sample: [Sample(k=-2), Sample(k=40)],
    LateAfter: [LateAfter(t_ns=123_456_789)],
    Stop: [Stop()],
    Clock: [Clock()],
    Shutdown: [Shutdown()],
    Hello: [
        Hello({"http": 8000, "grpc": 9000}, "b00t", {"hostname": "h", "cpus": 2}, True),
        Hello({"http": 1}, "b00t", {}, False, challenge="0a" * 16),
    ],
    Ready: [Ready(usage=USAGE), Ready(usage=Usage(cpu_s=0, peak_rss_mb=0))],
    ProgressReply: [
        ProgressReply(completed=7, live=None, usage=USAGE),
        ProgressReply(completed=0, live=SecondSnapshot(-1, 10, 9, "HISTFAAAAB..."), usage=USAGE),
        ProgressReply(completed=0, live=SecondSnapshot(4, 0, 0, None), usage=USAGE),
    ],
    Sampled: [
        Sampled(3, in_flight=7, held=6.5, calls={"gateway->worker": 32}, backlog=0, cpu_s=1.5),
        Sampled(k=-1, in_flight=0, held=0.0, calls={}, backlog=120, cpu_s=0.0),
    ],
    ClockReply: [ClockReply(boot_id="b00t", wall_ns=1_700_000_000 * 10**9, t_ns=-5)],
    ServiceReport: [
        ServiceReport(
            10, 1, FirstError("a->b: gRPC UNAVAILABLE: x", 5), 2, 0, None, _recorder_json(), USAGE
        ),
        ServiceReport(10, 0, None, 2, 3, "a->b: an empty message", _recorder_json(), USAGE),
    ],
    WorkerReport: [
        WorkerReport(
            sends=_sends(),
            first_error=None,
            late_replies=3,
            rejected=1,
            first_rejected="replies (hb-x-reply-loadgen-0[0]@4): an empty message",
            recorder={},
            usage=USAGE,
        ),
        WorkerReport(_sends(), FirstError("loadgen->a: HTTP 502", -1), 0, 0, None, {}, USAGE),
    ],
    Error: [Error(message="load worker failed: ValueError('ü')")],
}
# every message class the module defines, so that a new one is tested (and fails
# here until it is in a union and has a sample)
DEFINED = [v for v in vars(messages).values() if isinstance(v, type) and hasattr(v, "TAG")]


def test_every_message_class_is_in_exactly_one_union_with_its_own_tag() -> None:
    assert set(DEFINED) == set(COMMANDS) | set(EVENTS)
    assert not set(COMMANDS) & set(EVENTS)
    assert len({cls.TAG for cls in DEFINED}) == len(DEFINED)


@pytest.mark.parametrize("cls", DEFINED, ids=lambda cls: cls.__name__)
def test_every_message_round_trips(cls: type[Message]) -> None:
    assert SAMPLES.get(cls), f"add a sample of {cls.__name__} to SAMPLES"
    for message in SAMPLES[cls]:
        line = encode(message)
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert decode(line) == message
        assert type(decode(line.decode())) is cls
        one_way = decode_command if cls in COMMANDS else decode_event
        assert one_way(line) == message


def test_message_values_are_frozen() -> None:
    start = Start(start_ns=1, origin_ns=2)
    with pytest.raises(AttributeError):
        start.start_ns = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"garbage\n", "not JSON"),
        (b"\xff\xfe\x00\n", "not JSON"),
        (b"\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object: [1, 2]"),
        (b'"start"\n', "not a JSON object"),
        (b'{"start_ns": 1}\n', 'no "type" field'),
        (b'{"type": "launch"}\n', 'unknown message type "launch" (known: auth, configure, start,'),
        (b'{"type": 3}\n', "unknown message type 3"),
        (b'{"type": "start", "start_ns": 1}\n', "start: missing field(s): origin_ns"),
        (b'{"type": "start"}\n', "start: missing field(s): start_ns, origin_ns"),
        (
            b'{"type": "start", "start_ns": 1, "origin_ns": 2, "rate": 5}\n',
            "start: unexpected field(s): rate",
        ),
        (
            b'{"type": "start", "start_ns": "1", "origin_ns": 2}\n',
            'start.start_ns: expected an integer, got a string: "1"',
        ),
        (
            b'{"type": "start", "start_ns": 1.5, "origin_ns": 2}\n',
            "start.start_ns: expected an integer, got a number: 1.5",
        ),
        (
            b'{"type": "late_after", "t_ns": true}\n',
            "late_after.t_ns: expected an integer, got a boolean: true",
        ),
        (
            b'{"type": "late_after", "t_ns": null}\n',
            "late_after.t_ns: expected an integer, got null",
        ),
        (b'{"type": "progress", "second": "3"}\n', "progress.second: expected an integer"),
        (b'{"type": "ready", "usage": [1, 2]}\n', "ready.usage: expected an object, got an array"),
        (
            b'{"type": "ready", "usage": {"cpu_s": 1}}\n',
            "ready.usage: missing field(s): peak_rss_mb",
        ),
        (
            b'{"type": "ready", "usage": {"cpu_s": "1", "peak_rss_mb": 2}}\n',
            "ready.usage.cpu_s: expected a number, got a string",
        ),
        (
            b'{"type": "hello", "ports": {"http": "8000"}, "boot_id": "b", "machine": {}, '
            b'"busy": false}\n',
            "hello.ports.http: expected an integer, got a string",
        ),
        (
            b'{"type": "hello", "ports": {}, "boot_id": "b", "machine": {}, "busy": 1}\n',
            "hello.busy: expected a boolean, got an integer: 1",
        ),
        (
            b'{"type": "progress_reply", "completed": 1, "live": {"second": 1}, '
            b'"usage": {"cpu_s": 1, "peak_rss_mb": 2}}\n',
            "progress_reply.live: missing field(s): sent, completed, latency",
        ),
        (
            b'{"type": "service_report", "handled": 1, "errors": 0, "first_error": null, '
            b'"late_replies": 0, "rejected": 0, "first_rejected": null, "recorder": "x", '
            b'"usage": {"cpu_s": 1, "peak_rss_mb": 2}}\n',
            'service_report.recorder: expected an object, got a string: "x"',
        ),
    ],
)
def test_a_malformed_line_is_a_protocol_error_that_says_what_is_wrong(
    line: bytes, says: str
) -> None:
    with pytest.raises(ProtocolError, match=re.escape(says)) as caught:
        decode(line)
    assert isinstance(caught.value, HopbenchError)


def test_a_long_bad_line_is_clipped_in_the_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(b"x" * 100_000 + b"\n")
    assert len(str(caught.value)) < 300
    assert "100000 characters" in str(caught.value)


def test_a_huge_integer_is_fine() -> None:
    assert decode(b'{"type": "late_after", "t_ns": 1' + b"0" * 40 + b"}") == LateAfter(10**40)
    assert decode(b'{"type": "progress", "second": -99999999999999999999}') == Progress(
        -99999999999999999999
    )


def test_a_command_is_not_an_event_nor_the_reverse() -> None:
    with pytest.raises(ProtocolError, match="expected a command, got the event 'hello'"):
        decode_command(encode(SAMPLES[Hello][0]))
    with pytest.raises(ProtocolError, match="expected an event, got the command 'stop'"):
        decode_event(encode(Stop()))


async def _serve(lines: list[bytes], limit: int = 1 << 16) -> tuple[list[Command], list[Event]]:
    """Feed a ChildChannel these lines and the end of input: what it passes on, and
    what it answers by itself."""
    reader = asyncio.StreamReader(limit=limit)
    answers: list[Event] = []
    channel = ChildChannel(reader, lambda data: answers.append(decode_event(data)), asyncio.Event())
    for line in lines:
        reader.feed_data(line)
    reader.feed_eof()
    return [command async for command in channel.commands()], answers


def test_a_child_answers_a_garbage_line_with_an_error_and_serves_the_next_command() -> None:
    commands, answers = asyncio.run(
        _serve(
            [
                b"garbage\n",
                encode(Progress(second=2)),
                encode(SAMPLES[Hello][0]),  # an event is not a command
                b'{"type": "late_after", "t_ns": "soon"}\n',
                encode(Clock()),
                encode(LateAfter(t_ns=5)),
            ]
        )
    )
    assert commands == [Progress(second=2), LateAfter(t_ns=5), Stop()]  # Stop: end of input
    assert [type(a) for a in answers] == [Error, Error, Error, ClockReply]
    errors = [a.message for a in answers if isinstance(a, Error)]
    assert errors[0].startswith("bad command line: not JSON")
    assert "expected a command, got the event 'hello'" in errors[1]
    assert "late_after.t_ns: expected an integer" in errors[2]


def test_a_child_skips_a_line_over_its_limit_and_serves_the_next() -> None:
    commands, answers = asyncio.run(_serve([b"x" * 500 + b"\n", encode(Stop())], limit=100))
    assert commands == [Stop()]
    assert len(answers) == 1
    assert isinstance(answers[0], Error)
    assert "a line too long" in answers[0].message


def test_a_child_stops_on_its_stop_signal() -> None:
    async def scenario() -> list[Command]:
        stop = asyncio.Event()
        channel = ChildChannel(asyncio.StreamReader(), lambda data: None, stop)
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return [command async for command in channel.commands()]

    assert asyncio.run(scenario()) == [Stop()]


async def _child_fed(lines: list[bytes]) -> Child:
    reader = asyncio.StreamReader()
    for line in lines:
        reader.feed_data(line)
    reader.feed_eof()
    return Child("gateway/0", reader, lambda data: None, address="h:1")


def test_the_orchestrator_takes_each_event_by_its_type() -> None:
    async def scenario() -> tuple[Ready, ProgressReply]:
        child = await _child_fed([encode(ProgressReply(3, None, USAGE)), encode(Ready(USAGE))])
        ready = await child.expect(Ready, 1)
        return ready, await child.expect(ProgressReply, 1)

    assert asyncio.run(scenario()) == (Ready(USAGE), ProgressReply(3, None, USAGE))


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"Traceback (most recent call last):\n", "sent a line that is not an event (not JSON"),
        (encode(Stop()), "sent a line that is not an event (expected an event, got the command"),
        (encode(Error(message="boom")), "reported an error: boom"),
    ],
)
def test_the_orchestrator_fails_clearly_on_a_bad_event_line(line: bytes, says: str) -> None:
    async def scenario() -> None:
        child = await _child_fed([line, encode(Ready(USAGE))])
        await child.expect(Ready, 1)

    with pytest.raises(RunError, match=re.escape(says)):
        asyncio.run(scenario())
