"""Small helpers for processes and ports: the orchestrator's own, and the broker
server on this host whose CPU a run counts."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved before any fork (the child only calls it); None off Linux."""
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


_PRCTL = _prctl()


def dies_with_us(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties a child to this process: Linux sends it ``sig`` when
    we die, even by SIGKILL (prctl PR_SET_PDEATHSIG, kept across the child's exec).

    The kernel fires it when the *thread* that forked the child ends, so a child is
    tied only when started from the main thread (an event loop's, in every hopbench
    process); from another thread this returns None and the child is not tied. If we
    died between the fork and the prctl, the child sees a new parent and exits at once.
    None off Linux, where prctl does not exist.
    """
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = _PRCTL, os.getpid()

    def tie() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os._exit(1)

    return tie


async def terminate(proc: asyncio.subprocess.Process, grace_s: float = 5.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
            return
        except TimeoutError:
            continue


def terminate_popen(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """The same for a process started with subprocess (not bound to any event loop)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)


# Processes that forward a published container port: their CPU is not the broker's.
PORT_PROXIES = frozenset({"docker-proxy", "rootlessport", "slirp4netns", "pasta", "conmon"})


@dataclass(frozen=True)
class ServerProcess:
    """The OS process serving a broker's address on this host, as far as we can tell."""

    pid: int | None  # None: its CPU cannot be measured from here
    name: str = ""  # its command name, e.g. beam.smp
    why: str = ""  # with no pid: why not


def is_local(host: str) -> bool:
    """Is this address one of this host's own (loopback, or an interface's)?"""
    if host in {"localhost", ""}:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError:
            return False
    if address.is_loopback:
        return True
    import psutil

    own = {a.address.split("%")[0] for nics in psutil.net_if_addrs().values() for a in nics}
    return str(address) in own


def server_process(host: str, port: int) -> ServerProcess:
    """The process listening on host:port: a socket in LISTEN state on that port
    (psutil reads /proc/net/tcp{,6} and matches the socket's inode in /proc/PID/fd)."""
    if not is_local(host):
        return ServerProcess(None, why=f"{host} is another host: its CPU is not measured")
    import psutil

    try:
        listening = [
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        ]
    except psutil.AccessDenied:
        return ServerProcess(None, why="no permission to see which process listens (not root)")
    if not listening:
        return ServerProcess(None, why=f"no process of this host is seen listening on {port}")
    pid = listening[0]
    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        return ServerProcess(None, why=f"the process listening on {port} has gone")
    if name in PORT_PROXIES:
        return ServerProcess(
            None, name, f"{name} forwards port {port} from a container: the broker's CPU is there"
        )
    return ServerProcess(pid, name)
