"""Agents that only their orchestrator can drive, and secrets that stay home.

A plain socket client plays the stranger: against an agent on a non-loopback
address in another network namespace it is refused (and the listener it named
never hears from the agent); a line with no end is cut off at the agent's limit
without its memory growing; a run configured and never started is given up on
time; an agent with --exit-idle exits when no run ever comes; the RabbitMQ
password is in no file a run writes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopbench.brokers.procs import free_port
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.config.secrets import TOKEN_ENV, password_of, token_mac
from hopbench.protocol.messages import (
    Auth,
    Clock,
    ClockReply,
    Command,
    Configure,
    Error,
    Event,
    Hello,
    Start,
    decode_event,
    encode,
)
from tests.cli import hopbench
from tests.conftest import TOPOLOGIES
from tests.namespaces import Network, wait_healthy
from tests.test_cli_run import runs

LINE_LIMIT = 4 * 1024 * 1024  # the agent's default


class Client:
    """A stranger with a socket: reads events, sends commands, nothing else."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), 5)
        self.sock.settimeout(20)
        self.lines = self.sock.makefile("rb")

    def read(self) -> Event | None:
        line = self.lines.readline()
        return decode_event(line) if line else None

    def hello(self) -> Hello:
        event = self.read()
        assert isinstance(event, Hello), event
        return event

    def send(self, command: Command) -> None:
        self.sock.sendall(encode(command))

    def rest(self) -> list[Event]:
        """Every event until the agent hangs up."""
        found = []
        while (event := self.read()) is not None:
            found.append(event)
        return found

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


class AgentProc:
    def __init__(self, tmp: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port, self.http_port, self.grpc_port = free_port(), free_port(), free_port()
        self.log = tmp / f"agent-{self.port}.log"
        argv = [sys.executable, "-m", "hopbench", "agent", "--listen", f"127.0.0.1:{self.port}",
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                *flags]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **(env or {})}, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while b"control on" not in self.log.read_bytes():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.05)

    def memory_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[AgentProc]]:
    agents: list[AgentProc] = []
    try:
        yield agents
    finally:
        for agent in agents:
            agent.stop()


def spec(role_endpoint: str, mode: str = "http", rate: float = 200.0) -> RunSpec:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode=mode)
    return RunSpec(
        run_id="f00dcafe",
        topology=topology.to_dict(),
        load=LoadSpec(rate=rate, duration_s=3, warmup_s=0, payload_bytes=100),
        endpoints={mode: {"gateway": [role_endpoint], "worker": [role_endpoint]}},
    )


def configure(service: str, run: RunSpec) -> Configure:
    return Configure(service, 0, run.model_dump(mode="json"), 0)


def hello_of(port: int) -> Hello:
    """What a health probe reads."""
    client = Client("127.0.0.1", port)
    try:
        return client.hello()
    finally:
        client.close()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Listener:
    """A TCP server that counts who connects: what an agent was told to flood."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.mark.integration
def test_a_stranger_is_refused_by_an_agent_on_another_host(
    network: Network, tmp_path: Path
) -> None:
    token = secrets.token_hex(32)
    network.create(["far"])
    network.publish({})
    network.start("far", ["env", f"{TOKEN_ENV}={token}", sys.executable, "-m", "hopbench",
                          "agent", "--listen", "0.0.0.0:7070"])  # fmt: skip
    wait_healthy(network, "far", [sys.executable, "-c",
                 "import socket; socket.create_connection(('127.0.0.1', 7070), 2)"])  # fmt: skip
    far = network.address["far"]
    target = Listener(f"{network.subnet}.1")  # on our side of the bridge: the agent can reach it
    try:
        # configure and start, as the client did: refused at the first line
        client = Client(far, 7070)
        hello = client.hello()
        assert len(hello.challenge) == 32
        client.send(configure("loadgen", spec(target.address)))
        client.send(Start(start_ns=0, origin_ns=0))
        (refusal,) = client.rest()
        assert isinstance(refusal, Error)
        assert refusal.message.startswith("refused: this agent only serves an orchestrator")
        assert "got 'configure' first" in refusal.message
        client.close()

        # a wrong token, and a replayed answer to another connection's challenge
        client = Client(far, 7070)
        client.send(Auth(mac=token_mac("not-the-token-at-all", client.hello().challenge)))
        (refusal,) = client.rest()
        assert isinstance(refusal, Error)
        assert "does not match" in refusal.message
        client.close()
        client = Client(far, 7070)
        client.hello()
        client.send(Auth(mac=token_mac(token, hello.challenge)))  # the first hello's nonce
        (refusal,) = client.rest()
        assert isinstance(refusal, Error)
        assert "does not match" in refusal.message
        client.close()

        # the agent lives on, and answers its orchestrator
        client = Client(far, 7070)
        client.send(Auth(mac=token_mac(token, client.hello().challenge)))
        client.send(Clock())
        assert isinstance(client.read(), ClockReply)
        client.close()
        time.sleep(1)
        assert target.accepted == 0  # never a connection to the listener it was told of
    finally:
        target.close()
    assert "refused" in (tmp_path / "far.log").read_text()


def test_an_agent_beyond_loopback_will_not_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "agent", "--listen", f"0.0.0.0:{free_port()}"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "other hosts can reach this agent, so it needs a shared token" in done.stderr
    assert f"set {TOKEN_ENV}" in done.stderr
    assert "--token-file" in done.stderr
    assert "Traceback" not in done.stderr
    short = tmp_path / "token"
    short.write_text("abc\n")
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "agent", "--listen", "0.0.0.0:7070",
         "--token-file", str(short)], capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"--token-file {short}: the agent token has 3 characters, fewer than 16" in done.stderr


@pytest.mark.parametrize("token", [True, False], ids=["before-auth", "after-hello"])
def test_an_endless_line_is_cut_off_without_memory_growing(
    tmp_path: Path, started: list[AgentProc], token: bool
) -> None:
    env = {TOKEN_ENV: secrets.token_hex(32)} if token else {}
    agent = AgentProc(tmp_path, env=env)
    started.append(agent)
    client = Client("127.0.0.1", agent.port)
    client.hello()
    before = agent.memory_kb("VmHWM")
    chunk = b"x" * (16 * 1024 * 1024)
    sent = 0
    try:
        while sent < 256 * 1024 * 1024:  # no newline: 250 MiB took an agent to 576 MB
            client.sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 64 * 1024 * 1024, "the agent kept reading"
    events: list[Event] = []
    with contextlib.suppress(ConnectionResetError):  # it hung up with our bytes unread
        events = client.rest()
    client.close()
    grew_mb = (agent.memory_kb("VmHWM") - before) / 1024
    assert grew_mb < 40, grew_mb  # the limit is 4 MiB
    if events:
        assert isinstance(events[0], Error)
        said = "over 4194304 bytes" if token else "a line too long"
        assert said in events[0].message
    assert agent.proc.poll() is None
    assert not hello_of(agent.port).busy  # and it still serves


def test_a_run_configured_and_never_started_is_given_up(
    tmp_path: Path, started: list[AgentProc]
) -> None:
    agent = AgentProc(tmp_path, "--start-within", "2", "--max-rate", "1000")
    started.append(agent)
    elsewhere = free_port()

    # over its limits: refused with the flag that would raise them
    client = Client("127.0.0.1", agent.port)
    client.hello()
    client.send(configure("loadgen", spec(f"127.0.0.1:{elsewhere}", rate=5000)))
    (refusal,) = client.rest()
    assert isinstance(refusal, Error)
    assert "rate of 5000/s is over this agent's limit of 1000/s" in refusal.message
    assert "--max-rate" in refusal.message
    client.close()

    # a service replica, configured and never started
    client = Client("127.0.0.1", agent.port)
    client.hello()
    began = time.monotonic()
    client.send(configure("worker", spec(f"0.0.0.0:{elsewhere}")))
    ready = client.read()
    assert ready is not None
    assert ready.TAG == "ready", ready
    assert listening(agent.http_port)  # its own port on its --listen host, not the spec's
    assert not listening(elsewhere)
    rest = client.rest()
    took = time.monotonic() - began
    client.close()
    assert 1.5 < took < 15, took
    errors = [e.message for e in rest if isinstance(e, Error)]
    assert errors == ["no run started within 2 s of connecting (this agent's --start-within)"]
    assert not listening(agent.http_port)
    assert not hello_of(agent.port).busy  # free for the next orchestrator


def test_an_idle_agent_exits_when_no_run_ever_comes(
    tmp_path: Path, started: list[AgentProc]
) -> None:
    agent = AgentProc(tmp_path, "--exit-idle", "2")
    started.append(agent)
    began = time.monotonic()
    while agent.proc.poll() is None and time.monotonic() - began < 20:
        with contextlib.suppress(OSError):  # health probes are not runs: they keep nothing alive
            hello_of(agent.port)
        time.sleep(0.3)
    assert agent.proc.poll() == 0, agent.log.read_text()
    assert time.monotonic() - began < 8
    assert "done after 0 run(s)" in agent.log.read_text()


@pytest.mark.integration
def test_no_file_a_run_writes_holds_the_rabbitmq_password(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    password = password_of(rabbitmq_url)
    assert password, "the test needs a RabbitMQ URL with a password"
    out = tmp_path / "out"
    done = hopbench("run", str(TOPOLOGIES / "chain.yaml"), "--mode", "rabbitmq", "--rate", "100",
                    "--duration", "1", "--warmup", "0", "--rabbitmq-url", rabbitmq_url,
                    "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run,) = runs(out)
    assert run["completed"] == run["sent"] == 100  # the children had the password
    (spec_path,) = out.glob("runs/*/spec.json")
    assert json.loads(spec_path.read_text())["rabbitmq_url"].split("@")[0].endswith(":***")
    secret = f":{password}@".encode()
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 5
    assert [p for p in written if secret in p.read_bytes()] == []
    assert secret.decode() not in done.stderr + done.stdout
