"""The control protocol's messages: one frozen dataclass per command (orchestrator →
child) and per event (child → orchestrator), and their one codec.

On the wire a message is one line of JSON, ``{"type": TAG, field: value, ...}``, with
nested values (Usage, SecondSnapshot, SendSummary, FirstError) as JSON objects; over a child's
pipes or an agent's TCP connection alike (hopbench.protocol.channel). ``decode``
checks every field against the dataclass's annotations, and anything else (not JSON,
an unknown type, a missing, unexpected or wrongly typed field) is a ProtocolError
that names the type and the field: never a KeyError or TypeError in the middle of a
run. A huge integer is fine: Python's ints have no limit.

Written by hand on dataclasses and json, not pydantic or protobuf, because it is
small and stays so: a dozen flat messages whose fields are ints, strings, booleans,
four value types and two opaque JSON objects (a run's spec, a recorder's encoded
histograms and bitmaps, which no one should validate or copy field by field on the
way through). The values are plain dataclasses both ends construct and match on,
the errors are ours with no translation layer, the lines stay readable JSON (a
health probe reads the hello), and nothing is generated.
"""

from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias, Union, get_args, get_origin, get_type_hints

from hopbench.errors import FirstError, ProtocolError
from hopbench.measure.merge import SendSummary
from hopbench.measure.series import SecondSnapshot
from hopbench.measure.usage import Usage

__all__ = [
    "COMMANDS",
    "EVENTS",
    "Auth",
    "Clock",
    "ClockReply",
    "Command",
    "Configure",
    "Error",
    "Event",
    "FirstError",
    "Hello",
    "LateAfter",
    "Message",
    "Progress",
    "ProgressReply",
    "Ready",
    "Sample",
    "Sampled",
    "SecondSnapshot",
    "SendSummary",
    "ServiceReport",
    "Shutdown",
    "Start",
    "Stop",
    "Usage",
    "WorkerReport",
    "decode",
    "decode_command",
    "decode_event",
    "encode",
]

# ---- commands: orchestrator → child ----


@dataclass(frozen=True, slots=True)
class Configure:
    """To an agent: be this service replica (or load worker) of this run."""

    TAG: ClassVar[str] = "configure"
    service: str
    replica: int
    spec: dict[str, Any]  # the RunSpec, model_dump(mode="json")
    clock_offset_ns: int  # what the agent subtracts from its clock (0 on our kernel)


@dataclass(frozen=True, slots=True)
class Auth:
    """To an agent, first: the answer to its hello's challenge, HMAC-SHA256 of the
    nonce under the shared token (hopbench.config.secrets.token_mac)."""

    TAG: ClassVar[str] = "auth"
    mac: str


@dataclass(frozen=True, slots=True)
class Start:
    """Go, for services and load workers alike (orchestrator's clock): the schedule
    starts at start_ns, which a load worker keeps; the measured window at origin_ns,
    from which a service counts its time series."""

    TAG: ClassVar[str] = "start"
    start_ns: int
    origin_ns: int


@dataclass(frozen=True, slots=True)
class Progress:
    """Completions so far and, given a second of the measured window, that second."""

    TAG: ClassVar[str] = "progress"
    second: int | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """What is queued in the process now: answered at once with a Sampled (sample k)."""

    TAG: ClassVar[str] = "sample"
    k: int


@dataclass(frozen=True, slots=True)
class LateAfter:
    """Completions after t_ns count as late: the grace period has run out."""

    TAG: ClassVar[str] = "late_after"
    t_ns: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish: a service closes and reports; a load worker that has reported exits."""

    TAG: ClassVar[str] = "stop"


@dataclass(frozen=True, slots=True)
class Clock:
    """A clock probe, answered at once with a ClockReply, at any time."""

    TAG: ClassVar[str] = "clock"


@dataclass(frozen=True, slots=True)
class Shutdown:
    """To an agent: exit (the orchestrator is done with it)."""

    TAG: ClassVar[str] = "shutdown"


# ---- events: child → orchestrator ----


@dataclass(frozen=True, slots=True)
class Hello:
    """An agent's first line on every connection."""

    TAG: ClassVar[str] = "hello"
    ports: dict[str, int]  # its data port per mode ("http", "grpc")
    boot_id: str  # its kernel: the same as ours means one monotonic clock
    machine: dict[str, Any]  # its host, as results record it
    busy: bool  # serving another orchestrator's run
    challenge: str = ""  # a fresh nonce to answer with Auth; "" when no token is needed


@dataclass(frozen=True, slots=True)
class Ready:
    TAG: ClassVar[str] = "ready"
    usage: Usage  # so far: a process's cost counts from here


@dataclass(frozen=True, slots=True)
class ProgressReply:
    TAG: ClassVar[str] = "progress_reply"
    completed: int  # completions recorded so far, warm-up included
    live: SecondSnapshot | None  # the second asked for, if one was
    usage: Usage  # so far: the cost of the measured window is the difference of two


@dataclass(frozen=True, slots=True)
class Sampled:
    """The answer to Sample k: the messages this process holds, right now."""

    TAG: ClassVar[str] = "sampled"
    k: int
    in_flight: int  # a service: messages inside its handlers (0 for a load worker)
    held: float  # a service: messages inside its handlers, on average since the last Sample
    calls: dict[str, int]  # per out-edge: requests and publishes sent, not yet answered
    backlog: int  # a load worker: messages due in its schedule, not yet sent
    cpu_s: float  # its CPU so far (the orchestrator cannot read an agent's /proc)
    db_waiting: int = 0  # a service with work.db: queries waiting for a pool connection


@dataclass(frozen=True, slots=True)
class ClockReply:
    TAG: ClassVar[str] = "clock_reply"
    boot_id: str
    wall_ns: int
    t_ns: int  # the monotonic clock, read last: the reply leaves right after it


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """A service replica's last line."""

    TAG: ClassVar[str] = "service_report"
    handled: int
    errors: int
    first_error: FirstError | None  # the first of those errors, in words
    late_replies: int
    rejected: int  # messages received and rejected: undecodable, foreign or impossible
    first_rejected: str | None  # the first of them: where, and why
    recorder: dict[str, Any]  # Recorder.to_json(): encoded histograms and bitmaps
    usage: Usage
    cache: dict[str, Any] | None = None  # CacheStats.to_json(), if its work has a cache
    # connections_opened, tls_handshakes, tls_resumed (hopbench.transports.base)
    connections: dict[str, int] = dataclasses.field(default_factory=dict)
    db: dict[str, Any] | None = None  # work.db: its queries (hopbench.services.db report)
    lock_waits: int = 0  # pessimistic lock: messages that found their key held
    lock_retries: int = 0  # optimistic lock: work redone after a failed compare-and-set
    # edge name -> what it wrote for that edge's messages (hopbench.transports.codec)
    wire: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """The counts of this process's row in the results."""
        counts: dict[str, Any] = {
            "handled": self.handled,
            "errors": self.errors,
            "late_replies": self.late_replies,
            "rejected": self.rejected,
            "lock_waits": self.lock_waits,
            "lock_retries": self.lock_retries,
            **self.connections,
        }
        if self.db is not None:
            counts["db"] = self.db
        return counts


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """A load worker's report when its schedule is done. Its failed sends are in
    ``sends``, counted against the messages, not as the process's errors."""

    TAG: ClassVar[str] = "worker_report"
    sends: SendSummary
    first_error: FirstError | None  # the first failed send, in words
    late_replies: int
    rejected: int  # replies received and rejected: undecodable, foreign or impossible
    first_rejected: str | None  # the first of them: where, and why
    recorder: dict[str, Any]  # Recorder.to_json(): encoded histograms and bitmaps
    usage: Usage
    # connections_opened, tls_handshakes, tls_resumed (hopbench.transports.base)
    connections: dict[str, int] = dataclasses.field(default_factory=dict)
    wire: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # as above

    def counts(self) -> dict[str, Any]:
        """The counts of this process's row in the results."""
        return {"late_replies": self.late_replies, "rejected": self.rejected, **self.connections}


@dataclass(frozen=True, slots=True)
class Error:
    """The child could not do what it was asked: the orchestrator fails the run."""

    TAG: ClassVar[str] = "error"
    message: str


Command: TypeAlias = (
    Auth | Configure | Start | Progress | Sample | LateAfter | Stop | Clock | Shutdown
)
Event: TypeAlias = (
    Hello | Ready | ProgressReply | Sampled | ClockReply | ServiceReport | WorkerReport | Error
)
Message: TypeAlias = Command | Event
COMMANDS: tuple[type[Command], ...] = get_args(Command)
EVENTS: tuple[type[Event], ...] = get_args(Event)
_BY_TAG: dict[str, type[Message]] = {cls.TAG: cls for cls in (*COMMANDS, *EVENTS)}


def encode(message: Message) -> bytes:
    """One line of JSON, newline included."""
    return json.dumps({"type": message.TAG, **_plain(message)}).encode() + b"\n"


def decode(line: bytes | str) -> Message:
    """A line back into its message; ProtocolError, saying what is wrong, if it is not one."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"not JSON ({exc}): {_clip(line)}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"not a JSON object: {_clip(line)}")
    if "type" not in data:
        raise ProtocolError(f'no "type" field: {_clip(line)}')
    tag = data.pop("type")
    cls = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if cls is None:
        known = ", ".join(_BY_TAG)
        raise ProtocolError(f"unknown message type {_clip(json.dumps(tag))} (known: {known})")
    message: Message = _build(cls, data, tag)
    return message


def decode_command(line: bytes | str) -> Command:
    message = decode(line)
    if not isinstance(message, COMMANDS):
        raise ProtocolError(f"expected a command, got the event {message.TAG!r}")
    return message


def decode_event(line: bytes | str) -> Event:
    message = decode(line)
    if not isinstance(message, EVENTS):
        raise ProtocolError(f"expected an event, got the command {message.TAG!r}")
    return message


def _plain(value: Any) -> dict[str, Any]:
    """A dataclass's fields, nested value types as dicts (shallow: no dict is copied)."""
    out = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        out[f.name] = _plain(item) if dataclasses.is_dataclass(item) else item
    return out


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The class's annotations, resolved once."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    optional = {
        f.name
        for f in fields
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    missing = [n for n in names if n not in data and n not in optional]
    if missing:
        raise ProtocolError(f"{where}: missing field(s): {', '.join(missing)}")
    extra = sorted(set(data) - set(names))
    if extra:
        raise ProtocolError(f"{where}: unexpected field(s): {', '.join(map(_clip, extra))}")
    hints = _hints(cls)
    return cls(**{n: _check(hints[n], data[n], f"{where}.{n}") for n in names if n in data})


_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_JSON_KINDS = {**_KINDS, list: "an array", dict: "an object", type(None): "null"}


def _check(hint: Any, value: Any, where: str) -> Any:
    """value, if it is of the annotated type (the few shapes messages use)."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin in (types.UnionType, Union):  # always X | None
        (inner,) = (arg for arg in get_args(hint) if arg is not type(None))
        return None if value is None else _check(inner, value, where)
    if origin is dict or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        if origin is None:
            return _build(hint, value, where)
        item = get_args(hint)[1]
        if item is Any:
            return value
        return {k: _check(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise _wrong(where, _KINDS.get(hint, str(hint)), value)


def _wrong(where: str, expected: str, value: Any) -> ProtocolError:
    got = _JSON_KINDS.get(type(value), type(value).__name__)
    return ProtocolError(f"{where}: expected {expected}, got {got}: {_clip(json.dumps(value))}")


def _clip(text: bytes | str, limit: int = 80) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
