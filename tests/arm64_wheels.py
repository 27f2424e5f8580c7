"""`make arm64-check`: for every package requirements.lock pins, does PyPI serve a
wheel for Linux aarch64, CPython 3.11? Those without one are built from source in the
Dockerfile's build stage (it has gcc and the headers); this lists them, and fails
when one of them has no source distribution to build either.

It asks pip to resolve each pinned file for that platform without installing
(`pip install --dry-run --platform ... --only-binary :all:`), then the same with
`--no-binary` for those that fail. It builds nothing: `make arm64-build`
(tests/test_arm64_image.py) builds and runs the image for arm64 under emulation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64",
             "musllinux_1_2_aarch64", "linux_aarch64"]  # fmt: skip
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", re.M)


def pins(lock: Path) -> list[str]:
    """name==version of every pin that applies to CPython 3.11."""
    found = []
    for name, version, marker in PIN.findall(lock.read_text()):
        if marker and not _applies(marker):
            continue
        found.append(f"{name}=={version}")
    return found


def _applies(marker: str) -> bool:
    from packaging.markers import Marker

    env = {"python_full_version": "3.11.9", "python_version": "3.11",
           "platform_machine": "aarch64", "sys_platform": "linux",
           "platform_system": "Linux", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}  # fmt: skip
    return bool(Marker(marker).evaluate(env))


def resolves(pin: str, binary: bool) -> bool:
    """A wheel for aarch64 (binary), or else a source distribution (not binary)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI alone, as the Dockerfile's pip sees it
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet"]
    with tempfile.TemporaryDirectory() as target:
        if binary:
            platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
            pip += ["--target", target, "--python-version", "3.11", "--implementation", "cp",
                    "--abi", "cp311", *platforms, "--only-binary", ":all:"]  # fmt: skip
        else:
            pip += ["--no-binary", ":all:"]
        done = subprocess.run([*pip, pin], capture_output=True, text=True, env=env, timeout=300)
    return done.returncode == 0


def main(lock: str) -> int:
    wanted = pins(Path(lock))
    to_build = [pin for pin in wanted if not resolves(pin, binary=True)]
    unbuildable = [pin for pin in to_build if not resolves(pin, binary=False)]
    print(f"{len(wanted)} pinned packages for linux/aarch64, CPython 3.11:")
    print(f"  {len(wanted) - len(to_build)} have a wheel")
    print(f"  {len(to_build)} are built in the build stage: {', '.join(to_build) or 'none'}")
    if unbuildable:
        print(f"  no wheel and no source distribution: {', '.join(unbuildable)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
