"""The envelope on the wire: its encoding, its compression, and the bytes it took.

Encoding (the ``encoding`` setting): ``protobuf`` is the envelope of hopbench.proto as
protobuf bytes; ``json`` is the same envelope as JSON text — its fields by their proto
names (zero values left out, as proto3's JSON mapping does), integers as JSON numbers,
and the payload as a string when it is UTF-8 text (``payload_text``), else base64
(``payload``): what a JSON API would send. Written by hand, not with protobuf's
``json_format``, which costs 80 µs to encode and 200 µs to decode one envelope in
Python (measured): that would measure a library, not the format.

Compression (the ``compression`` setting) of one message: gzip (zlib level 6, the
usual HTTP server default) or zstd (level 3, its default). HTTP and RabbitMQ compress
here and say so in the message (Content-Encoding, AMQP content-encoding); gRPC and
Kafka compress inside their clients (grpcio's message compression, Kafka's batch
compression type).

``WireCounts`` counts, per out-edge, what a process sent: messages, their encoded
size, and the bytes written for them after compression (docs/results.md, "Bytes on
the wire", says what each mode counts and what it leaves out).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import random
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from hopbench.errors import TransportError
from hopbench.proto.hopbench_pb2 import Envelope, Hop

CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}
GZIP_LEVEL = 6
ZSTD_LEVEL = 3

_ENVELOPE_FIELDS = ("id", "flow", "worker", "seq", "intended_ns", "sent_ns", "trace_id",
                    "warmup", "run_id")  # fmt: skip
_HOP_FIELDS = tuple(f.name for f in Hop.DESCRIPTOR.fields)


def encode(env: Envelope, encoding: str) -> bytes:
    if encoding == "json":
        return _to_json(env)
    return env.SerializeToString()


def decode(body: bytes, encoding: str) -> Envelope:
    """The envelope in body; TransportError when body is not one."""
    try:
        if encoding == "json":
            return _from_json(body)
        return Envelope.FromString(body)
    except (DecodeError, ValueError, TypeError, binascii.Error) as exc:
        raise TransportError(f"not a {encoding} envelope ({len(body)} bytes): {exc}") from None


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip wrapper
        return packer.compress(data) + packer.flush()
    if compression == "zstd":
        return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))
    return data


def decompress(data: bytes, compression: str) -> bytes:
    """data as it was before compress; TransportError when it is not compressed so."""
    try:
        if compression == "gzip":
            return zlib.decompress(data, 31)
        if compression == "zstd":
            return bytes(cramjam.zstd.decompress(data))
    except (zlib.error, cramjam.DecompressionError) as exc:
        raise TransportError(f"not {compression} data ({len(data)} bytes): {exc}") from None
    if compression not in ("none", "identity", ""):
        raise TransportError(f"unknown content encoding {compression!r}")
    return data


def _to_json(env: Envelope) -> bytes:
    doc: dict[str, Any] = {}
    for name in _ENVELOPE_FIELDS:
        value = getattr(env, name)
        if value:
            doc[name] = value
    if env.hops:
        doc["hops"] = [
            {name: value for name in _HOP_FIELDS if (value := getattr(hop, name))}
            for hop in env.hops
        ]
    if env.payload:
        try:
            doc["payload_text"] = env.payload.decode()
        except UnicodeDecodeError:
            doc["payload"] = base64.b64encode(env.payload).decode("ascii")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _from_json(body: bytes) -> Envelope:
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    hops = [Hop(**hop) for hop in doc.pop("hops", ())]
    text = doc.pop("payload_text", None)
    payload = text.encode() if text is not None else base64.b64decode(doc.pop("payload", ""))
    return Envelope(**doc, hops=hops, payload=payload)


# English-like words with Zipf-like frequencies: text that compresses as prose and
# JSON documents do (gzip 2.5-3.5x on kilobytes), unlike random bytes (not at all).
_TEXT = (
    "the of and to a in is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there been one all we their has would "
    "when if will more no out so said what up its about into than them can only other "
    "order customer item price quantity status shipped payment account address city "
    "country total currency discount invoice product warehouse delivery tracking number "
    "created updated pending confirmed cancelled returned description category review "
    "rating stock available reserved service request response latency message queue"
)
_WORDS = _TEXT.split(" ")
# picked two words at a time: half the picks for the same text
_PHRASES = [f"{first} {second}" for first in _WORDS for second in _WORDS]
_WEIGHTS = list(
    itertools.accumulate(
        1 / (i + 1) / (j + 1) for i in range(len(_WORDS)) for j in range(len(_WORDS))
    )
)
# More than a Kafka record batch holds by default (kafka_batch_bytes): no record of a
# batch carries another's payload, so batch compression finds no repeat we made.
POOL_BYTES = 1 << 20


def make_payload(content: str, size: int) -> bytes:
    """size bytes of payload: random (incompressible) or English-like ASCII text (the
    same text for the same size, so runs compare)."""
    if content != "text":
        return os.urandom(size)
    rng = random.Random(size)
    text = b""
    while len(text) < size:  # a phrase averages over 10 characters with its space
        phrases = rng.choices(_PHRASES, cum_weights=_WEIGHTS, k=size // 10 + 1)
        text += " ".join(phrases).encode() + b" "
    return text[:size]


class Payloads:
    """Payloads of one size and content, a different one each time: slices of a pool
    of about POOL_BYTES, in turn (a payload larger than half of it repeats)."""

    def __init__(self, content: str, size: int) -> None:
        self.size = size
        self._count = max(1, POOL_BYTES // size) if size else 1
        self._pool = make_payload(content, size * self._count)
        self._next = 0

    def next(self) -> bytes:
        start = self._next * self.size
        self._next = (self._next + 1) % self._count
        return self._pool[start : start + self.size]


@dataclass
class WireCount:
    """One out-edge's messages from one process: requests or publishes, and replies."""

    messages: int = 0  # envelopes sent (a publish-subscribe publish once per channel)
    encoded_bytes: int = 0  # their encoded size, before compression
    wire_messages: int = 0  # of those, the ones whose size after compression was seen
    wire_bytes: int = 0  # the bytes written for those, after compression
    replies: int = 0  # replies this process sent back over the edge (as its callee)
    reply_encoded_bytes: int = 0
    reply_wire_messages: int = 0
    reply_wire_bytes: int = 0


class WireCounts:
    """Per out-edge (by name): what this process wrote for its messages."""

    def __init__(self) -> None:
        self._counts: dict[str, WireCount] = {}

    def of(self, edge_name: str) -> WireCount:
        count = self._counts.get(edge_name)
        if count is None:
            count = self._counts[edge_name] = WireCount()
        return count

    def sent(self, edge_name: str, encoded: int, wire: int | None, *, reply: bool = False) -> None:
        """One message (or reply) sent; wire None: its client compresses out of sight
        (written says later what it wrote, where it can be seen)."""
        count = self.of(edge_name)
        if reply:
            count.replies += 1
            count.reply_encoded_bytes += encoded
        else:
            count.messages += 1
            count.encoded_bytes += encoded
        if wire is not None:
            self.written(edge_name, 1, wire, reply=reply)

    def written(self, edge_name: str, messages: int, wire: int, *, reply: bool = False) -> None:
        """messages took wire bytes after compression (Kafka: a record batch)."""
        count = self.of(edge_name)
        if reply:
            count.reply_wire_messages += messages
            count.reply_wire_bytes += wire
        else:
            count.wire_messages += messages
            count.wire_bytes += wire

    def to_json(self) -> dict[str, dict[str, int]]:
        return {name: asdict(count) for name, count in self._counts.items()}
