"""Checks of the command line's own values: modes, settings, load, rates, pauses.

The command line (hopbench.cli) only parses; what a value must be is said here, as a
ConfigError naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import os

import pydantic

from hopbench.config.faults import Pause
from hopbench.config.settings import LoadSpec, Settings
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
        raise ConfigError(f"--setting {err['loc'][0]}: {err['msg']}") from None


def load_from(args: argparse.Namespace) -> LoadSpec:
    try:
        return LoadSpec(
            rate=args.rate,
            duration_s=args.duration,
            warmup_s=args.warmup,
            payload_bytes=args.payload,
            workers=args.workers or default_workers(),
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
        raise ConfigError(f"--{flag.replace('_', '-')}: {err['msg']}") from None


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
    if not rates or min(rates) <= 0:
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
