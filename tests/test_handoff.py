"""The pieces of a publish that is not waited for: a coroutine run at once as far as it
goes (hopbench.transports.eager), and one timer for many deadlines
(hopbench.transports.deadlines)."""

from __future__ import annotations

import asyncio

import pytest

from hopbench.transports import eager
from hopbench.transports.deadlines import Deadlines


async def _returns_at_once() -> int:
    return 5


async def _waits_then_returns(future: asyncio.Future[int]) -> int:
    await asyncio.sleep(0)
    return await future + 1


async def _raises_at_once() -> None:
    raise ValueError("refused")


def test_a_coroutine_that_never_waits_is_done_in_the_callers_turn() -> None:
    async def scenario() -> None:
        tasks_before = len(asyncio.all_tasks())
        started = eager.start(_returns_at_once())
        assert started == eager.Done(5)
        assert len(asyncio.all_tasks()) == tasks_before  # no task was made
        with pytest.raises(ValueError, match="refused"):
            eager.start(_raises_at_once())

    asyncio.run(scenario())


def test_the_rest_of_a_coroutine_that_waits_runs_in_a_task() -> None:
    async def scenario() -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        started = eager.start(_waits_then_returns(future))
        assert isinstance(started, asyncio.Task)
        await asyncio.sleep(0.01)
        assert not started.done()
        future.set_result(41)
        assert await started == 42

    asyncio.run(scenario())


def test_cancelling_the_rest_reaches_the_coroutine() -> None:
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cleaned.append("cancelled inside")
            raise

    async def scenario() -> None:
        started = eager.start(waits_forever())
        assert isinstance(started, asyncio.Task)
        await asyncio.sleep(0.01)
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started

    asyncio.run(scenario())
    assert cleaned == ["cancelled inside"]


def test_deadlines_cancel_what_is_pending_at_its_deadline_and_nothing_else() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        settled, late, later = (loop.create_future() for _ in range(3))
        deadlines.watch(settled, 0.05, loop.time())
        deadlines.watch(late, 0.05, loop.time())
        deadlines.watch(later, 0.3, loop.time())
        settled.set_result(None)
        await asyncio.sleep(0.15)
        assert (settled.cancelled(), late.cancelled(), later.done()) == (False, True, False)
        assert len(deadlines) == 1
        await asyncio.sleep(0.25)
        assert later.cancelled()
        assert len(deadlines) == 0
        deadlines.close()

    asyncio.run(scenario())


def test_a_deadline_counts_from_the_hand_off_not_from_the_watch() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        future = loop.create_future()
        deadlines.watch(future, 0.2, loop.time() - 0.19)  # handed over 190 ms ago
        await asyncio.sleep(0.05)
        assert future.cancelled()
        deadlines.close()

    asyncio.run(scenario())
