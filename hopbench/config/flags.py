"""Checks of the command line's own values: modes, settings, load, rates, pauses.

The command line (hopbench.cli) only parses; what a value must be is said here, as a
ConfigError naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import math
import os

import pydantic

from hopbench.config.faults import Pause
from hopbench.config.settings import LoadSpec, Settings, unsupported_lever
from hopbench.config.topology import LOADGEN, MODES, PATTERNS, Topology
from hopbench.errors import ConfigError


def modes(text: str | None) -> list[str | None]:
    if text is None:
        return [None]
    modes = list(MODES) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)} (or 'all')")
    return list(modes)


def patterns(text: str | None) -> list[str | None]:
    if text is None:
        return [None]
    found = [p.strip() for p in text.split(",") if p.strip()]
    for pattern in found or [text]:
        if pattern not in PATTERNS:
            raise ConfigError(f"--pattern: {pattern!r} is not one of {', '.join(PATTERNS)}")
    return list(found)


def settings_from(assignments: list[str]) -> Settings:
    values: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--setting {assignment}: expected KEY=VALUE, e.g. kafka_acks=-1")
        if key not in Settings.model_fields:
            known = ", ".join(Settings.model_fields)
            raise ConfigError(f"--setting {key}: not a setting; known: {known}")
        values[key] = value
    try:
        return Settings.model_validate(values)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = str(err["loc"][0])
        raise ConfigError(f"--setting {key}={values[key]}: {_sentence(err['msg'])}") from None


def check_levers(topology: Topology, settings: Settings) -> None:
    """--setting asks no edge for a lever its mode cannot carry (tls on Kafka...)."""
    for edge in topology.edges:
        refused = unsupported_lever(edge.mode, settings.with_overrides(edge.settings))
        if refused is not None:
            name, why = refused
            value = str(getattr(settings, name)).lower()
            raise ConfigError(f"--setting {name}={value}: edge {edge.name} is {edge.mode}: {why}")


def _sentence(msg: str) -> str:
    """pydantic's 'Input should be ...' as part of a sentence: 'should be ...'."""
    return msg.removeprefix("Input ").removeprefix("Value error, ")


def load_from(args: argparse.Namespace) -> LoadSpec:
    try:
        return LoadSpec(
            rate=args.rate,
            duration_s=args.duration,
            warmup_s=args.warmup,
            payload_bytes=args.payload,
            workers=default_workers() if args.workers is None else args.workers,
            max_in_flight=args.max_in_flight,
            arrival=args.arrival,
            seed=args.seed,
            concurrency=args.concurrency,
            think_ms=args.think_ms,
        )
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        flag = {"duration_s": "duration", "warmup_s": "warmup", "payload_bytes": "payload"}.get(
            str(err["loc"][0]), str(err["loc"][0])
        )
        value = err["input"]
        shown = (
            f"--{flag.replace('_', '-')} {value:g}"
            if isinstance(value, float)
            else (f"--{flag.replace('_', '-')} {value}")
        )
        raise ConfigError(f"{shown}: {_sentence(err['msg'])}") from None


def check_run_flags(args: argparse.Namespace) -> None:
    """The flags of `run` that LoadSpec does not hold: each in its range."""
    if args.repeat < 1:
        raise ConfigError(f"--repeat {args.repeat}: run each cell at least once (1 or more)")
    _at_least(args.grace, 0, "--grace", "seconds the sinks may take after the last send")
    _at_least(args.agents_wait, 0, "--agents-wait", "seconds to keep trying agents")
    if args.slo_p99_ms is not None and not (0 < args.slo_p99_ms < math.inf):
        raise ConfigError(f"--slo-p99-ms {args.slo_p99_ms:g}: a p99 in ms, more than 0")


def check_agent_flags(args: argparse.Namespace) -> None:
    """`agent`: its data ports are ports, its idle deadline a duration."""
    for flag, port in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} {port}: a TCP port, 1 to 65535")
    if args.exit_idle is not None and not 0 < args.exit_idle < math.inf:
        raise ConfigError(f"--exit-idle {args.exit_idle:g}: seconds, more than 0")


def _at_least(value: float, low: float, flag: str, what: str) -> None:
    if not low <= value < math.inf:  # NaN too
        raise ConfigError(f"{flag} {value:g}: {what}, {low:g} or more")


def default_workers() -> int:
    """What the machine can spare: a quarter of its cores, at least one."""
    return max(1, (os.cpu_count() or 1) // 4)


def check_load(topology: Topology, load: LoadSpec) -> None:
    if load.closed and not (topology.entry_edge.is_sync and topology.records_completion(LOADGEN)):
        raise ConfigError(
            f"--concurrency: a closed loop waits for each message to complete, but "
            f"'{topology.name}' over {topology.mode_label} completes at "
            f"{topology.route_label(topology.expected_routes()[0])}, not at the load "
            "generator; use an open loop (--rate) or request-reply edges"
        )


def rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--rates: {text!r} is not a comma list of numbers") from None
    if not rates or min(rates) <= 0 or not all(map(math.isfinite, rates)):
        raise ConfigError(f"--rates: {text!r}: rates are positive numbers")
    return rates


def check_pauses(topology: Topology, pauses: list[Pause]) -> None:
    """Every pause names a replica of the topology."""
    for pause in pauses:
        service, _, replica = pause.target.partition("/")
        svc = topology.services.get(service)
        if svc is None or not replica.isdigit() or int(replica) >= svc.replicas:
            names = ", ".join(f"{n}/0..{s.replicas - 1}" for n, s in topology.services.items())
            raise ConfigError(f"--pause {pause.target}: no such replica; there are {names}")
