"""requirements.lock, which the image installs with --require-hashes, pins every
dependency pyproject.toml declares, at a version the declaration allows: a dependency
added without `make lock` would build an image that fails at its first import."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.M)
    return {canonicalize_name(name): version for name, version in found}


def missing(lock: str) -> list[str]:
    """What the lock lacks of pyproject.toml's dependencies, or pins out of range."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = pins(lock)
    wrong = []
    for line in declared:
        requirement = Requirement(line)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            wrong.append(f"{requirement.name}: not in requirements.lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    return wrong


def test_the_lock_pins_every_dependency_at_an_allowed_version() -> None:
    wrong = missing((ROOT / "requirements.lock").read_text())
    assert not wrong, f"run `make lock`: {'; '.join(wrong)}"


def test_a_missing_or_stale_pin_is_found() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    without = re.sub(r"^cramjam==.*$", "", lock, flags=re.M)
    assert missing(without) == ["cramjam: not in requirements.lock"]
    old = re.sub(r"^grpcio==\S+", "grpcio==1.0.0", lock, flags=re.M)
    assert missing(old) == ["grpcio==1.0.0 is outside >=1.85.1"]
