"""Waiting for a broker that is still starting, up to a deadline (``--brokers-wait``),
and the one place that words what hopbench says about a broker it cannot use.

A broker that is not there yet (nothing listens, the connection drops while it
boots, an attempt times out) is tried again every half second until the deadline,
after saying once which broker is awaited and where. A broker that answers and
refuses (wrong user or password, a vhost that does not exist) is not retried:
waiting would not change its answer, so that is an error at once, saying what the
broker answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hopbench.errors import BrokerUnavailable

DEFAULT_WAIT_S = 30.0  # a broker container's start, with room to spare
ATTEMPT_TIMEOUT_S = 5.0  # one connection attempt to a broker that accepts but is silent
RETRY_EVERY_S = 0.5
STOPPING_CLEANUP_S = 2.0  # a stopped command's cleanup of one broker, at most
T = TypeVar("T")


def cleanup_limits(cleanup_s: float, reconnect_s: float) -> tuple[float, float]:
    """How long a broker's cleanup may take, and how long it may wait for the broker to
    come back. Called in the task whose cleanup it is: when that task is being cancelled,
    the command was stopped (Ctrl-C, SIGTERM, `docker compose stop`) and must end
    promptly: one attempt, within STOPPING_CLEANUP_S. Under compose the broker is being
    stopped at the same moment; what was not deleted is logged (and RabbitMQ's queues
    expire)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        return min(cleanup_s, STOPPING_CLEANUP_S), 0.0
    return cleanup_s, reconnect_s


class NotYet(Exception):
    """One attempt failed in a way that may pass: the broker may still be starting."""


async def wait_for_broker(
    broker: str,
    where: str,
    attempt: Callable[[float], Awaitable[T]],
    *,
    wait_s: float,
    say: Callable[[str], None],
    fix: str,
) -> T:
    """``attempt(timeout_s)`` until it succeeds, raises something other than NotYet
    (a refusal: passed on at once), or ``wait_s`` has passed (BrokerUnavailable
    naming the broker, where, the last reason and ``fix``). With ``wait_s`` 0: one
    attempt."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    tries = 0
    while True:
        tries += 1
        left = deadline - loop.time()
        timeout_s = ATTEMPT_TIMEOUT_S if wait_s <= 0 else min(max(left, 0.5), ATTEMPT_TIMEOUT_S)
        try:
            return await attempt(timeout_s)
        except NotYet as exc:
            reason = str(exc)
        left = deadline - loop.time()
        if left <= 0:
            raise BrokerUnavailable(not_answering(broker, where, reason, wait_s, tries, fix))
        if tries == 1:
            say(f"waiting for {broker} at {where} (up to {wait_s:g} s, --brokers-wait): {reason}")
        await asyncio.sleep(min(RETRY_EVERY_S, left))


def not_answering(broker: str, where: str, reason: str, wait_s: float, tries: int, fix: str) -> str:
    """A broker that never came: which, where, the last reason, how long we tried."""
    waited = f"; tried {tries} times in {wait_s:g} s (--brokers-wait)" if wait_s > 0 else ""
    return f"{broker} does not answer at {where} ({reason}){waited}. {fix}"


def refused(broker: str, where: str, answer: str, fix: str) -> str:
    """A broker that answered and refused us: what it said, and what to change."""
    return f"{broker} at {where} refused the connection: {answer}. {fix}"


def timed_out(exc: BaseException) -> str:
    """An exception as a reason, in words (a bare TimeoutError says nothing)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"
