"""A private RabbitMQ node for tests that stop, restart or reconfigure a broker.

The shared server on 5672 is never touched: this node has its own name, AMQP port,
distribution port, Erlang cookie (a HOME of its own), database and logs, all in a
temporary folder; no management plugin. It is started and stopped by its pid (and
``rabbitmqctl -n NODE stop``) and can be restarted with its data kept, so durable
queues and persistent messages survive as they would on a real broker.

Reusable: pass ``config`` (rabbitmq.conf lines) and read ``url``; with ``tls=True`` the
node also listens for AMQPS on ``tls_port``, with a certificate from a CA made for it
(trustme): ``tls_url`` names the CA file as aiormq reads it (``?cafile=``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


class RabbitNode:
    """One RabbitMQ node of a test's own: ``start()``, ``stop()``, ``restart()``."""

    def __init__(self, base: Path, config: list[str] | None = None, tls: bool = False) -> None:
        self.base = base
        self.name = f"hbtest{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.config = config or []
        self.tls_port = free_port() if tls else None
        self.ca_file = base / "ca.pem"
        if tls:
            self.config = [*self.config, *self._tls_lines(base)]
        self.proc: subprocess.Popen[bytes] | None = None
        home = base / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        conf = base / "rabbitmq"
        lines = ["loopback_users = none", f"listeners.tcp.default = {self.port}", *self.config]
        conf.with_suffix(".conf").write_text("\n".join(lines) + "\n")
        (base / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
        }

    def _tls_lines(self, base: Path) -> list[str]:
        """An AMQPS listener with a certificate from a CA of the node's own."""
        import trustme

        base.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="hopbench test node")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
        cert.private_key_pem.write_to_path(str(base / "key.pem"))
        return [
            f"listeners.ssl.default = {self.tls_port}",
            f"ssl_options.cacertfile = {self.ca_file}",
            f"ssl_options.certfile = {base / 'cert.pem'}",
            f"ssl_options.keyfile = {base / 'key.pem'}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def tls_url(self) -> str:
        """The AMQPS URL (tls=True): the client trusts the node's CA only."""
        return f"amqps://guest:guest@127.0.0.1:{self.tls_port}/?cafile={self.ca_file}"

    def start(self) -> None:
        log = (self.base / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [SERVER], env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,  # its own group: the test stops it, not a Ctrl-C
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (listening(self.port) and (self.tls_port is None or listening(self.tls_port))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.base / "server.out").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"private RabbitMQ node {self.name} did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the node (rabbitmqctl, then its process group by pid); data is kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            subprocess.run([CTL, "-n", self.name, "stop"], env=self.env, capture_output=True,
                           timeout=60, check=False)  # fmt: skip
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def rabbit_node(
    base: Path, config: list[str] | None = None, tls: bool = False
) -> Iterator[RabbitNode]:
    node = RabbitNode(base, config, tls)
    try:
        node.start()
        yield node
    finally:
        node.stop()
