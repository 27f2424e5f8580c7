"""Faults a run can inject, to see what the numbers do under them."""

from __future__ import annotations

from dataclasses import dataclass

from hopbench.errors import ConfigError


@dataclass(frozen=True)
class Pause:
    """Freeze one process (SIGSTOP) for a while during the measured window: a stall."""

    target: str  # "worker/0"
    at_s: float  # seconds after the measured window starts
    for_s: float

    @classmethod
    def parse(cls, text: str) -> Pause:
        target, _, when = text.partition("@")
        at, _, length = when.partition(":")
        try:
            pause = cls(target, float(at), float(length))
        except ValueError:
            raise ConfigError(
                f"--pause {text}: expected SERVICE/REPLICA@AT:SECONDS, e.g. worker/0@5:1"
            ) from None
        if "/" not in target or pause.at_s < 0 or pause.for_s <= 0:
            raise ConfigError(
                f"--pause {text}: expected SERVICE/REPLICA@AT:SECONDS, e.g. worker/0@5:1"
            )
        return pause
