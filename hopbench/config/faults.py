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


FAULT_SYNTAX = (
    "expected kill:SERVICE/REPLICA@AT[+restart], kill:kafka@AT, restart:kafka@AT, "
    "drop:rabbitmq@AT or delay:rabbitmq@AT:FOR+LATENCY "
    "(AT in seconds of the measured window, e.g. 5, 5s or 500ms), e.g. kill:worker/0@5s+restart"
)
BROKERS = ("kafka",)  # brokers a run can kill or restart: only the one it starts itself
# brokers whose connections a run can drop or delay: through a TCP proxy of the run's own
LINKS = ("rabbitmq",)
LINK_ACTIONS = ("drop", "delay")
DELAY_SYNTAX = "expected delay:rabbitmq@AT:FOR+LATENCY, e.g. delay:rabbitmq@2s:3s+200ms"


@dataclass(frozen=True)
class Fault:
    """A fault injected at a moment of the measured window: kill a replica with SIGKILL
    (and optionally start it again), or kill or restart the embedded Kafka broker."""

    action: str  # "kill" or "restart"
    target: str  # "worker/0" or "kafka"
    at_s: float  # seconds after the measured window starts
    restart: bool = False  # kill:SERVICE/N@AT+restart: a new process takes its place
    for_s: float = 0.0  # delay: how long the connections are slowed
    latency_s: float = 0.0  # delay: added to every chunk forwarded, each way

    @property
    def text(self) -> str:
        if self.action == "delay":
            return f"delay:{self.target}@{self.at_s:g}s:{self.for_s:g}s+{self.latency_s * 1000:g}ms"
        return f"{self.action}:{self.target}@{self.at_s:g}s" + ("+restart" if self.restart else "")

    @property
    def on_link(self) -> bool:
        """A fault on the connections to a broker (drop or delay), not on a process."""
        return self.action in LINK_ACTIONS

    @property
    def on_broker(self) -> bool:
        return self.target in BROKERS

    @classmethod
    def parse(cls, text: str) -> Fault:
        action, _, rest = text.strip().partition(":")
        target, _, when = rest.partition("@")
        if action in LINK_ACTIONS:
            return cls._parse_link(text, action, target, when)
        when, plus, extra = when.partition("+")
        if action not in ("kill", "restart") or not target or (plus and extra != "restart"):
            raise ConfigError(f"--fault {text}: {FAULT_SYNTAX}")
        fault = cls(action, target, _seconds(text, when), restart=bool(plus))
        if fault.on_broker:
            if fault.restart:
                raise ConfigError(
                    f"--fault {text}: a broker is restarted with restart:{target}@AT, "
                    "not kill…+restart"
                )
        elif action == "restart":
            raise ConfigError(
                f"--fault {text}: restart applies to a broker ({', '.join(BROKERS)}); "
                f"to restart a replica, kill it with +restart: kill:{target}@{when}+restart"
            )
        elif "/" not in target:
            raise ConfigError(f"--fault {text}: {target!r} is not SERVICE/REPLICA; {FAULT_SYNTAX}")
        return fault

    @classmethod
    def _parse_link(cls, text: str, action: str, target: str, when: str) -> Fault:
        """drop:rabbitmq@AT, delay:rabbitmq@AT:FOR+LATENCY."""
        if target not in LINKS:
            raise ConfigError(
                f"--fault {text}: hopbench can {action} the connections to "
                f"{', '.join(LINKS)} only, not {target!r}; {FAULT_SYNTAX}"
            )
        if action == "drop":
            return cls(action, target, _seconds(text, when))
        at, _, rest = when.partition(":")
        length, plus, latency = rest.partition("+")
        if not (at and length and plus and latency):
            raise ConfigError(f"--fault {text}: {DELAY_SYNTAX}")
        fault = cls(action, target, _seconds(text, at), for_s=_seconds(text, length),
                    latency_s=_seconds(text, latency))  # fmt: skip
        if fault.for_s <= 0 or fault.latency_s <= 0:
            raise ConfigError(f"--fault {text}: FOR and LATENCY must be over 0; {DELAY_SYNTAX}")
        return fault


def _seconds(text: str, when: str) -> float:
    """5, 5s or 500ms: seconds, at or after the measured window's start."""
    scale = 1.0
    if when.endswith("ms"):
        when, scale = when[:-2], 0.001
    elif when.endswith("s"):
        when = when[:-1]
    try:
        at = float(when) * scale
    except ValueError:
        raise ConfigError(f"--fault {text}: {FAULT_SYNTAX}") from None
    if not at >= 0 or at == float("inf"):
        raise ConfigError(f"--fault {text}: the moment must be 0 or more seconds")
    return at


def check_faults(
    faults: list[Fault],
    services: dict[str, int],
    modes: set[str],
    duration_s: float,
    kafka_bootstrap: str | None,
) -> None:
    """Every fault names a replica of the topology or a broker the run starts itself,
    at a moment inside the measured window; one fault per target."""
    seen: set[str] = set()
    for fault in faults:
        where = f"--fault {fault.text}"
        if fault.at_s >= duration_s:
            raise ConfigError(
                f"{where}: t={fault.at_s:g} s is not inside the measured window "
                f"(0 to {duration_s:g} s); use a smaller AT or a longer --duration"
            )
        if fault.target in seen:
            raise ConfigError(f"{where}: one fault per target; {fault.target} has two")
        seen.add(fault.target)
        if fault.on_link:
            if fault.target not in modes:
                raise ConfigError(f"{where}: no edge of this topology uses {fault.target}")
            continue
        if fault.on_broker:
            _check_broker(where, fault, modes, kafka_bootstrap)
            continue
        service, _, replica = fault.target.partition("/")
        count = services.get(service, 0)
        if not replica.isdigit() or int(replica) >= count:
            names = ", ".join(f"{n}/0..{c - 1}" for n, c in services.items())
            raise ConfigError(f"{where}: no such replica; there are {names}")


def _check_broker(where: str, fault: Fault, modes: set[str], kafka_bootstrap: str | None) -> None:
    if fault.target not in modes:
        raise ConfigError(f"{where}: no edge of this topology uses {fault.target}")
    if kafka_bootstrap:
        raise ConfigError(
            f"{where}: hopbench kills or restarts only the Kafka broker it starts itself "
            f"(Tansu), not the one at --kafka-bootstrap {kafka_bootstrap}"
        )
