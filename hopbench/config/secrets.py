"""The run's two secrets: the RabbitMQ password and the agents' token.

**The RabbitMQ password never leaves the process that was given it.** The run's
spec (``runs/*/spec.json``, and the spec an agent receives in Configure) carries
the URL with its password replaced by ``***``. Every process that connects puts
the password back from its own environment: ``HOPBENCH_RABBITMQ_PASSWORD``, or
the password of ``HOPBENCH_RABBITMQ_URL`` when that URL names the same user. The
orchestrator sets the first for the processes it starts; an agent gets it from
its container's secret (the rendered compose file and manifests do that).

**The agent token** (``HOPBENCH_AGENT_TOKEN``, or a file) is shared by an
orchestrator and its agents; it never travels: an agent sends a fresh nonce in
its hello and accepts only a client that answers with HMAC-SHA256(token, nonce)
(hopbench.control.agent).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hopbench.errors import ConfigError

REDACTED = "***"
PASSWORD_ENV = "HOPBENCH_RABBITMQ_PASSWORD"
URL_ENV = "HOPBENCH_RABBITMQ_URL"
# PostgreSQL's password (a database in a service's work) travels the same way
POSTGRES_PASSWORD_ENV = "HOPBENCH_POSTGRES_PASSWORD"
POSTGRES_URL_ENV = "HOPBENCH_POSTGRES_URL"
TOKEN_ENV = "HOPBENCH_AGENT_TOKEN"
TOKEN_MIN_CHARS = 16
_MAC_CONTEXT = b"hopbench agent v1 "


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(netloc without userinfo, user, password) of a URL, raw as written."""
    netloc = urlsplit(url).netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return netloc, None, None
    user, colon, password = userinfo.partition(":")
    return hostport, user, password if colon else None


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ***: safe to write and print."""
    hostport, user, password = _split_userinfo(url)
    if password is None:
        return url
    return urlunsplit(urlsplit(url)._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


def password_of(url: str) -> str | None:
    return _split_userinfo(url)[2]


def restore_password(
    url: str,
    environ: Mapping[str, str] | None = None,
    *,
    broker: str = "RabbitMQ",
    password_env: str = PASSWORD_ENV,
    url_env: str = URL_ENV,
) -> str:
    """A redacted URL with the password put back from this process's environment;
    any other URL as it is. ConfigError, naming the variables, when it is not there."""
    hostport, user, password = _split_userinfo(url)
    if password != REDACTED:
        return url
    env = os.environ if environ is None else environ
    found = env.get(password_env)
    if not found and env.get(url_env):
        _, their_user, their_password = _split_userinfo(env[url_env])
        if their_user == user and their_password not in (None, REDACTED):
            found = their_password
    if not found:
        raise ConfigError(
            f"the run's {broker} URL {url} carries no password (it never travels); set "
            f"{password_env}, or {url_env} with user {user!r} and its password, in this "
            "process's environment"
        )
    return urlunsplit(urlsplit(url)._replace(netloc=f"{user}:{found}@{hostport}"))


def read_token(file: Path | None, what: str) -> str | None:
    """The agent token: from FILE (its first line) when given, else $HOPBENCH_AGENT_TOKEN;
    None when neither is set. ConfigError, saying the fix, when it is too short to be one."""
    if file is not None:
        try:
            token = file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what} {file}: cannot read it ({exc.strerror})") from None
        source = f"{what} {file}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
        if not token:
            return None
    if len(token) < TOKEN_MIN_CHARS:
        raise ConfigError(
            f"{source}: the agent token has {len(token)} characters, fewer than "
            f"{TOKEN_MIN_CHARS}; make one with: python3 -c 'import secrets; "
            "print(secrets.token_hex(32))'"
        )
    return token


def token_mac(token: str, nonce: str) -> str:
    """The answer to an agent's challenge: HMAC-SHA256 of its nonce under the token."""
    return hmac.new(token.encode(), _MAC_CONTEXT + nonce.encode(), hashlib.sha256).hexdigest()


def mac_matches(token: str, nonce: str, mac: str) -> bool:
    return hmac.compare_digest(token_mac(token, nonce), mac)
