"""What a broker answered when hopbench could not connect: in words, and whether
waiting could help.

A broker that refused the credentials or the virtual host answered: asking again
gives the same answer, so a wait loop stops at once and the user fixes the URL.
Nothing listening, a name that does not resolve, or no answer at all may change
while a broker starts: a wait loop keeps trying until its deadline.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiormq


@dataclass(frozen=True)
class BrokerAnswer:
    text: str  # what happened, naming the broker's address and its answer
    refused: bool  # the broker answered no: trying again cannot help


def rabbitmq_answer(exc: BaseException, url: str, timeout_s: float = 5.0) -> BrokerAnswer:
    """RabbitMQ's answer to a connection attempt to ``url`` that raised ``exc``."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    where = f"{host}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
    user = unquote(parts.username or "guest")
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return BrokerAnswer(
            f"RabbitMQ at {where} refused the login of user {user!r} (ACCESS_REFUSED: a "
            "wrong user name or password); fix them in --rabbitmq-url or "
            "$HOPBENCH_RABBITMQ_URL",
            refused=True,
        )
    if _vhost_refused(exc):
        return BrokerAnswer(
            f"RabbitMQ at {where} let user {user!r} log in but refused virtual host "
            f"{vhost!r} (NOT_ALLOWED: it does not exist, or the user has no permissions on "
            "it); fix the path of --rabbitmq-url (the default virtual host is '/': a URL "
            "ending in a single slash)",
            refused=True,
        )
    if isinstance(exc, aiormq.exceptions.ConnectionClosed):
        return BrokerAnswer(f"RabbitMQ at {where} closed the connection: {exc}", refused=True)
    return BrokerAnswer(_unreached(exc, host, where, timeout_s), refused=False)


def _vhost_refused(exc: BaseException) -> bool:
    """aiormq reports the broker's Connection.Close in answer to Connection.Open (the
    virtual host) as an unexpected frame; the code it carries (530) is not kept."""
    if isinstance(exc, aiormq.exceptions.ConnectionClosed):
        return exc.args[:1] == (530,)  # (reply code, reply text)
    text = str(exc)
    return (
        isinstance(exc, aiormq.exceptions.InvalidFrameError)
        and "Connection.OpenOk" in text
        and "Connection.Close" in text
    )


def _unreached(exc: BaseException, host: str, where: str, timeout_s: float) -> str:
    code = exc.errno if isinstance(exc, OSError) else None
    if isinstance(exc, socket.gaierror) or code in (socket.EAI_NONAME, socket.EAI_AGAIN):
        return f"the host name {host!r} of the RabbitMQ URL does not resolve"
    if code == errno.ECONNREFUSED:
        return f"nothing listens at {where} (connection refused): RabbitMQ is not running there"
    if isinstance(exc, TimeoutError):
        return (
            f"no AMQP answer from {where} within {timeout_s:g} s: the host drops the "
            "connection, or what listens there is not RabbitMQ's AMQP port"
        )
    if isinstance(exc, aiormq.exceptions.IncompatibleProtocolError):
        return f"what listens at {where} does not speak AMQP 0-9-1: not RabbitMQ's AMQP port"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach RabbitMQ at {where} ({exc.strerror})"
    return f"cannot reach RabbitMQ at {where} ({type(exc).__name__}: {exc})"
