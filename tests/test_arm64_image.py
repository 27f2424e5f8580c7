"""The image for arm64, built and run under emulation (`make arm64-build`).

qemu-user-static, registered with the kernel's binfmt_misc, runs aarch64 binaries on
this machine: a private engine (tests/compose_engine.py, ``Engine(arch="arm64")``)
imports arm64 stand-ins for python:3.11 and python:3.11-slim, builds the Dockerfile as
written on them (every RUN executes aarch64 binaries; the image is then marked
linux/arm64) from a local index of the pinned packages' aarch64 wheels (and
hdrhistogram's source, which the build stage compiles), and runs the image: an
in-process HTTP run of the chain topology completes with nothing lost.
Everything it started or registered is removed at the end. Root, Linux; run only when
HOPBENCH_TEST_ARM64=1 (the make target sets it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compose_engine import PYTHON_IMAGES, Engine, log, qemu_binfmt

# a cold cache debootstraps two arm64 trees under qemu before the build
pytestmark = [pytest.mark.arm64, pytest.mark.timeout(3600)]
if os.environ.get("HOPBENCH_TEST_ARM64") != "1":
    pytest.skip("`make arm64-build` runs these (HOPBENCH_TEST_ARM64=1)", allow_module_level=True)
if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("emulation and a private Docker engine need Linux and root",
                allow_module_level=True)  # fmt: skip

IMAGE = "hopbench:arm64"
RUN = "run topologies/chain.yaml --mode http --rate 50 --duration 3 --warmup 1 --out /tmp/r"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    start = time.monotonic()
    with qemu_binfmt("arm64"), tempfile.TemporaryDirectory(prefix="hopbench-arm64-") as tmp:
        engine = Engine(Path(tmp), arch="arm64")
        try:
            engine.start()
            if engine.private:
                engine.build_standins(PYTHON_IMAGES)
            engine.build_project(IMAGE, timeout=2400)
            log(f"arm64 engine, stand-ins and image ready in {time.monotonic() - start:.0f} s")
            yield engine
        finally:
            engine.stop()


def run_in_image(engine: Engine, *argv: str, entrypoint: str | None = None) -> str:
    entry = ["--entrypoint", entrypoint] if entrypoint else []
    return engine.docker("run", "--platform", "linux/arm64", "--rm", *entry, IMAGE, *argv,
                         timeout=600)  # fmt: skip


def test_the_image_is_built_for_arm64(engine: Engine) -> None:
    assert engine.docker("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}",
                         IMAGE).strip() == "linux/arm64"  # fmt: skip
    machine = run_in_image(engine, "-m", entrypoint="uname").strip()
    version = run_in_image(engine, "--version").strip()
    log(f"in the arm64 image: uname -m: {machine}; hopbench --version: {version}")
    assert machine == "aarch64"
    assert version.startswith("hopbench ")
    # hdrhistogram's C codec, compiled for aarch64 in the build stage
    probe = "import platform, pyhdrh; print(platform.machine(), pyhdrh.__file__)"
    machine, codec = run_in_image(engine, "-c", probe, entrypoint="python").split()
    assert machine == "aarch64"
    assert codec.startswith("/opt/hopbench/")
    assert "aarch64" in codec


def test_an_http_run_completes_in_the_image(engine: Engine) -> None:
    script = f"hopbench {RUN} >&2 && cat /tmp/r/results.json"
    start = time.monotonic()
    out = run_in_image(engine, "-c", script, entrypoint="sh")
    elapsed = time.monotonic() - start
    runs: list[dict[str, Any]] = json.loads(out)["runs"]
    (run,) = runs
    log(f"hopbench {RUN} under arm64 emulation: {elapsed:.0f} s, sent {run['sent']}, "
        f"completed {run['completed']}, lost {run['lost']}")  # fmt: skip
    assert run["mode"] == "http"
    assert run["sent"] > 0
    assert run["completed"] == run["expected"] == run["sent"]
    assert run["lost"] == run["duplicated"] == run["errors"] == 0
