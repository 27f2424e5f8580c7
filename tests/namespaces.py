"""Hosts on one machine for tests: a network namespace per host, all on one
bridge (which the test's own namespace joins at .1), and a hosts file per
namespace (``ip netns exec`` mounts /etc/netns/NAME/hosts on /etc/hosts), so that
names resolve as compose or a Kubernetes headless Service would resolve them.
Linux, root and iproute2; the fixture skips otherwise and removes everything it
made, whatever the test did."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

NETNS = Path("/etc/netns")


def ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (argv, done.stderr)


class Network:
    """A bridge and one namespace per compose service, each named in every hosts file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = secrets.token_hex(2)
        self.bridge = f"hbbr{self.tag}"
        self.subnet = f"10.232.{int(self.tag, 16) % 250 + 2}"
        self.address: dict[str, str] = {}  # host -> its address
        self.namespaces: dict[str, str] = {}  # host -> its namespace
        self.procs: list[subprocess.Popen[bytes]] = []

    def create(self, hosts: list[str]) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for k, host in enumerate(hosts, start=2):
            ns, veth = f"hb{self.tag}-{host}", f"hb{self.tag}v{k}"
            self.namespaces[host], self.address[host] = ns, f"{self.subnet}.{k}"
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{self.address[host]}/24", "dev", "eth0")
            ip("netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def publish(self, names: dict[str, list[str]]) -> None:
        """DNS for every namespace: each name resolves to the addresses of these hosts."""
        lines = ["127.0.0.1 localhost"]
        lines += [f"{self.address[host]} {name}" for name, hosts in names.items() for host in hosts]
        for ns in self.namespaces.values():
            (NETNS / ns).mkdir(parents=True, exist_ok=True)
            (NETNS / ns / "hosts").write_text("\n".join(lines) + "\n")

    def start(self, host: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{host}.log").open("wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[host], *argv],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespaces[host], *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(NETNS / ns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


def wait_healthy(net: Network, host: str, argv: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while net.run(host, argv, timeout=10).returncode != 0:
        assert time.monotonic() < deadline, f"{host}: {argv} never succeeded"
        time.sleep(0.2)
