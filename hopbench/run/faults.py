"""Faults applied during a run: each is a measured event, noted in the results."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from hopbench.config.faults import Pause
from hopbench.control.child import Child
from hopbench.errors import ConfigError
from hopbench.run.live import cancel


def check_pauses(pauses: list[Pause], services: list[Child]) -> None:
    """Every pause names a local process of this run (agents cannot be paused)."""
    by_name = {c.name: c for c in services}
    for pause in pauses:
        if pause.target not in by_name:
            known = ", ".join(by_name)
            raise ConfigError(f"--pause {pause.target}: no such process; known: {known}")
        if by_name[pause.target].remote:
            raise ConfigError(
                f"--pause {pause.target}: it runs as an agent at "
                f"{by_name[pause.target].address}; only local processes can be paused"
            )


def start_pauses(
    pauses: list[Pause],
    services: list[Child],
    origin_ns: int,
    notes: list[str],
    stack: contextlib.AsyncExitStack,
) -> None:
    """Schedule every pause; the stack cancels them (and resumes the process) at the end."""
    check_pauses(pauses, services)
    by_name = {c.name: c for c in services}
    for pause in pauses:
        task = asyncio.create_task(_pause(by_name[pause.target], pause, origin_ns, notes))
        stack.push_async_callback(cancel, task)


async def _pause(child: Child, pause: Pause, origin_ns: int, notes: list[str]) -> None:
    assert child.proc is not None
    await asyncio.sleep(max(0, origin_ns - time.monotonic_ns()) / 1e9 + pause.at_s)
    child.proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(pause.for_s)
    finally:
        child.proc.send_signal(signal.SIGCONT)  # also when the run is cut short
    notes.append(f"{pause.target} was paused for {pause.for_s:g} s at t={pause.at_s:g} s")
