"""Run a coroutine at once, as far as it goes without waiting; a task only for the rest.

Handing a message to a client library is usually synchronous in all but name:
aiokafka's ``send`` is a coroutine that returns the acknowledgement's future at once,
unless the partition's batch is full or the topic's metadata is missing. A task per
message costs more than that hand-off itself, and awaiting it in the caller's loop
would stop the caller for as long as the library waits (up to its timeout, with the
broker gone). ``start`` runs it in the caller's turn and makes a task of what is left
only when it has to wait: Python 3.12's eager tasks, on 3.11.

Only for coroutines that do not tie themselves to the task they started in:
``asyncio.timeout`` does (after the first wait it would cancel the caller, not the task
that finishes the coroutine); aiokafka's ``send`` waits with ``asyncio.wait`` and
plain futures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    value: T  # what the coroutine returned without waiting


def start(coroutine: Coroutine[Any, Any, T]) -> Done[T] | asyncio.Task[T]:
    """Run coroutine until it first waits: Done with its result if it never did, else
    a task that finishes it. Its exception, if it raised before waiting, is raised here."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as stop:
        return Done(stop.value)
    return asyncio.ensure_future(_Rest(coroutine, waiting))


class _Rest(Generic[T]):
    """What is left of a started coroutine, awaitable by a task: each future it waits
    on is handed to the task, as the coroutine itself would have done."""

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting

    def __await__(self) -> Generator[Any, None, T]:
        waiting = self._waiting
        while True:
            try:
                try:
                    yield waiting  # the task waits on it (None: one turn of the loop)
                except BaseException as exc:  # the task was cancelled: the coroutine decides
                    waiting = self._coroutine.throw(exc)
                else:
                    waiting = self._coroutine.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
