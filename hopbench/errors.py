"""The one error tree of hopbench. Everything a user can cause is one of these.

    HopbenchError            exit status 1 unless a subclass says otherwise
    ├── ConfigError          a topology, suite or override is wrong (exit 2)
    ├── BrokerUnavailable    a broker could not be started or reached
    ├── RunError             a service or load worker failed during a run
    ├── OutputError          the results folder cannot be written (full, read-only,
    │                        gone); what was already written stays
    ├── ProtocolError        a control line is malformed: not JSON, an unknown type,
    │                        a missing or wrongly typed field (hopbench.protocol)
    └── TransportError       one send, request or reply failed; the process that saw
                             it counts it as an error and the run goes on

Errors from pydantic, aiokafka, aio-pika, grpc or aiohttp are mapped to these at
the boundary (``raise ... from exc``); the CLI prints the message, never a traceback.

A process that counts TransportErrors keeps the first one in words (``FirstError``):
the likeliest cause of the rest, which a failed run's result names.
"""

from __future__ import annotations

from dataclasses import dataclass


class HopbenchError(Exception):
    exit_status = 1


class ConfigError(HopbenchError):
    exit_status = 2


class BrokerUnavailable(HopbenchError):
    pass


class RunError(HopbenchError):
    pass


class OutputError(HopbenchError):
    """A file under the results folder could not be written; the message names it."""


class ProtocolError(HopbenchError):
    """A line of the control protocol could not be decoded; the message says why."""


class TransportError(HopbenchError):
    """A send, request or reply failed; the caller counts it as an error."""


@dataclass(frozen=True, slots=True)
class FirstError:
    """The first error one process saw, in words, and when (monotonic ns on the run's
    clock): the rest usually follow from it."""

    message: str
    t_ns: int
