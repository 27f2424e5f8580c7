"""Run settings and the load: plain, frozen pydantic models at the config edge.

``Settings`` are the transport settings that change the answer (all written into the
results); ``EDGE_SETTINGS`` are the ones an edge may set for itself. ``LoadSpec`` is
the offered load, open or closed loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

Arrival = Literal["constant", "poisson"]
# the client libraries a caller can use (hopbench.transports.httpclients, .rabbitmq_pika)
HttpLibrary = Literal["aiohttp", "httpx", "pyreqwest"]
# "auto": chosen by http_library from the edge's other settings
HttpClientName = Literal["auto", "aiohttp", "httpx", "pyreqwest"]
RabbitMqClientName = Literal["aiormq", "pika"]
# settings that choose something only one mode has: an edge of another mode cannot set them
SETTING_MODES = {"http_client": "http", "rabbitmq_client": "rabbitmq"}
Encoding = Literal["protobuf", "json"]
Compression = Literal["none", "gzip", "zstd"]
PayloadContent = Literal["random", "text"]


class Settings(BaseModel):
    """Transport settings that change the answer; all are written into the results."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    request_timeout_s: float = Field(10.0, gt=0)
    http_connections: int = Field(32, ge=1, description="pooled connections per caller and target")
    http_client: HttpClientName = Field(
        "auto",
        description="the caller's HTTP library: aiohttp, httpx or pyreqwest (Rust); auto: "
        "pyreqwest, or aiohttp when the edge sets a lever only aiohttp carries (http_library)",
    )
    grpc_channels: int = Field(1, ge=1, description="channels per caller and target replica")
    keepalive: bool = Field(
        True,
        description="HTTP and gRPC: keep connections open between requests; off: a new TCP "
        "connection per HTTP request, a new gRPC channel per call (setup paid every time)",
    )
    tls: bool = Field(
        False, description="HTTP and gRPC: TLS, with a certificate authority made for the run"
    )
    tls_resumption: bool = Field(
        True,
        description="with tls: a new connection resumes an earlier TLS session (a ticket) "
        "instead of a full handshake",
    )
    kafka_acks: int = Field(1, description="producer acks: 0, 1 or -1 (all)")
    kafka_linger_ms: int = Field(0, ge=0)
    kafka_batch_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="producer batch size: aiokafka sends one batch per partition at a time, "
        "so a full 16 KB default batch makes every sender wait",
    )
    kafka_fetch_max_wait_ms: int = Field(
        5, ge=0, description="Tansu waits it out even with data ready (docs/findings.md)"
    )
    kafka_partitions: int | None = Field(
        None, ge=1, description="partitions per topic; default: the largest subscriber's replicas"
    )
    rabbitmq_confirms: bool = Field(False, description="publisher confirms awaited per message")
    rabbitmq_confirm_batch: int = Field(
        1,
        ge=1,
        le=100_000,
        description="with confirms: a publish waits for the confirms of the last N at once",
    )
    rabbitmq_durable: bool = Field(False, description="durable queues, persistent messages")
    rabbitmq_queue_type: Literal["classic", "quorum"] = Field(
        "classic", description="x-queue-type: quorum replicates through Raft and is on disk"
    )
    rabbitmq_reply: Literal["direct", "queue"] = Field(
        "direct", description="request-reply: direct reply-to, or an exclusive reply queue"
    )
    rabbitmq_client: RabbitMqClientName = Field(
        "aiormq",
        description="the RabbitMQ library of both ends: aiormq (asyncio), or pika "
        "(BlockingConnection in a thread, handing messages to the event loop)",
    )
    prefetch: int = Field(
        100, ge=1, description="messages one broker consumer handles at once (Kafka and RabbitMQ)"
    )
    encoding: Encoding = Field(
        "protobuf", description="the envelope on the wire: protobuf bytes or JSON text"
    )
    compression: Compression = Field(
        "none",
        description="per message: HTTP Content-Encoding, AMQP content-encoding, gRPC's "
        "compression (gzip only), Kafka's batch compression type",
    )
    payload_content: PayloadContent = Field(
        "random", description="payload bytes: random (incompressible) or English-like text"
    )

    @field_validator("kafka_acks")
    @classmethod
    def _acks_kafka_knows(cls, value: int) -> int:
        if value not in (-1, 0, 1):
            raise PydanticCustomError(
                "kafka_acks",
                "Kafka producer acks are 0 (none), 1 (the leader) or -1 (all replicas)",
            )
        return value

    # Field validators, not a model validator: the error then names the field. Each reads
    # the field it depends on, declared before it.
    @field_validator("rabbitmq_confirm_batch")
    @classmethod
    def _batches_need_confirms(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and not info.data.get("rabbitmq_confirms", False):
            raise PydanticCustomError(
                "rabbitmq_confirm_batch",
                "batches publisher confirms, and rabbitmq_confirms is false: set "
                "rabbitmq_confirms=true too, or leave the batch at 1",
            )
        return value

    @field_validator("rabbitmq_queue_type")
    @classmethod
    def _quorum_is_durable(cls, value: str, info: ValidationInfo) -> str:
        if value == "quorum" and not info.data.get("rabbitmq_durable", False):
            raise PydanticCustomError(
                "rabbitmq_queue_type",
                "quorum needs rabbitmq_durable=true: RabbitMQ's quorum queues are always "
                "durable; set both",
            )
        return value

    def with_overrides(self, overrides: Iterable[tuple[str, Any]]) -> Settings:
        """These settings with an edge's own (``Edge.settings``) on top."""
        update = dict(overrides)
        return self.model_copy(update=update) if update else self


# The settings an edge may set for itself; every transport honours them per edge.
EDGE_SETTINGS = frozenset(
    {
        "request_timeout_s",
        "http_connections",
        "http_client",
        "grpc_channels",
        "keepalive",
        "tls",
        "tls_resumption",
        "kafka_acks",
        "kafka_linger_ms",
        "kafka_batch_bytes",
        "kafka_fetch_max_wait_ms",
        "kafka_partitions",
        "rabbitmq_confirms",
        "rabbitmq_confirm_batch",
        "rabbitmq_durable",
        "rabbitmq_queue_type",
        "rabbitmq_client",
        "prefetch",
        "encoding",
        "compression",
    }
)

# What a mode cannot carry: (mode, setting, value) -> why, in a sentence.
REFUSED: dict[tuple[str, str, str], str] = {
    ("grpc", "encoding", "json"): "gRPC carries the envelope as protobuf, its own message "
    "format; JSON is for http, kafka and rabbitmq edges",
    ("grpc", "compression", "zstd"): "grpcio compresses with gzip or deflate, not zstd; use "
    "compression gzip on a grpc edge",
}


def refusal(mode: str, settings: Settings) -> str | None:
    """Why an edge of this mode cannot run with these settings, or None if it can."""
    for (refused_mode, name, value), why in REFUSED.items():
        if mode == refused_mode and getattr(settings, name) == value:
            return f"{name} {value} over {mode} cannot be: {why}"
    return None


# Connection levers only the HTTP and gRPC modes carry: the sentence that says why,
# for a broker mode that is asked for one.
_BROKER_CONNECTIONS = {
    ("kafka", "tls"): "not supported by Tansu, the embedded Kafka broker: the one it ships "
    "(0.6.0) serves plain TCP whatever certificate it is given; tls applies to http and grpc "
    "edges",
    ("rabbitmq", "tls"): "RabbitMQ's TLS is its URL's: pass --rabbitmq-url "
    "'amqps://USER:PASSWORD@HOST:5671/?cafile=/path/to/ca.pem' and leave tls out of the edge",
    ("kafka", "keepalive"): "a Kafka client keeps its connections for the whole run; "
    "keepalive applies to http and grpc edges",
    ("rabbitmq", "keepalive"): "a RabbitMQ client keeps one connection for the whole run; "
    "keepalive applies to http and grpc edges",
}


def unsupported_lever(mode: str, settings: Settings) -> tuple[str, str] | None:
    """(setting, why) when settings ask a mode for a connection lever it cannot carry."""
    asked = {"tls": settings.tls, "keepalive": not settings.keepalive}
    for name, on in asked.items():
        why = _BROKER_CONNECTIONS.get((mode, name))
        if on and why is not None:
            return name, why
    if mode == "rabbitmq" and settings.rabbitmq_client == "pika":
        format_levers = {
            "encoding": settings.encoding != "protobuf",
            "compression": settings.compression != "none",
        }
        for name, on in format_levers.items():
            if on:
                return name, (
                    "the pika client sends the protobuf envelope as it is: encoding and "
                    "compression are carried by the aiormq client; use rabbitmq_client aiormq, "
                    f"or leave {name} at its default"
                )
    if mode == "http" and http_library(settings) != "aiohttp":
        for name, on in _aiohttp_levers(settings).items():
            if on:
                return name, (
                    "the connection and compression levers (tls, keepalive, compression) "
                    f"are carried by the aiohttp client, and this edge's http_client is "
                    f"{settings.http_client}: use aiohttp or auto (which then chooses aiohttp), or "
                    f"leave {name} at its default"
                )
    return None


def _aiohttp_levers(settings: Settings) -> dict[str, bool]:
    """The HTTP levers only the aiohttp client carries, and whether each is asked for."""
    return {
        "tls": settings.tls,
        "keepalive": not settings.keepalive,
        "compression": settings.compression != "none",
    }


def http_library(settings: Settings) -> HttpLibrary:
    """The HTTP client library an edge with these settings runs: the one it names, or
    for ``auto`` pyreqwest (the cheapest caller measured: bench/RESULTS.md, "Generator
    cost"), unless a lever only aiohttp carries is asked for (tls, keepalive off,
    compression): then aiohttp. The one place this is decided."""
    if settings.http_client != "auto":
        return settings.http_client
    return "aiohttp" if any(_aiohttp_levers(settings).values()) else "pyreqwest"


def client_library(mode: str, settings: Settings) -> str | None:
    """The client library an edge of this mode runs, for a mode that has a choice."""
    if mode == "http":
        return http_library(settings)
    if mode == "rabbitmq":
        return settings.rabbitmq_client
    return None


class LoadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rate: float = Field(gt=0, description="target messages per second, all workers together")
    duration_s: float = Field(gt=0)
    warmup_s: float = Field(ge=0)
    payload_bytes: int = Field(ge=0)
    workers: int = Field(1, ge=1)
    max_in_flight: int = Field(10_000, ge=1)
    arrival: Arrival = "constant"
    seed: int = Field(0, description="Poisson arrivals are drawn from this seed")
    concurrency: int | None = Field(
        None, ge=1, description="closed loop: this many users in all (rate is then unused)"
    )
    think_ms: float = Field(0.0, ge=0, description="closed loop: pause after each reply")

    @property
    def closed(self) -> bool:
        return self.concurrency is not None

    @property
    def label(self) -> str:
        """'C=4' for a closed loop, '500/s' for an open one."""
        return f"C={self.concurrency}" if self.concurrency is not None else f"{self.rate:g}/s"
