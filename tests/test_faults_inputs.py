"""Bad input and a bad results folder: every flag and override checked (exit 2, one
sentence naming the flag and the fix), a results folder that is unusable, full or
taken refused before anything starts, one that fills up mid-command keeping what
was measured, and broker errors that say what the broker answered."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hopbench.brokers.rabbitmq import RabbitMqBroker
from hopbench.cli import main
from hopbench.config.outdir import OutLock, atomic_write_text
from hopbench.errors import BrokerUnavailable, ConfigError, OutputError
from tests.conftest import CONTAINERS, ROOT, TOPOLOGIES, reap

CHAIN = str(TOPOLOGIES / "chain.yaml")
NEEDS_MOUNTS = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a private tmpfs",
)


def hopbench(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hopbench", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI in this process; it must refuse with exit 2 and say why."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("hopbench: error: ")
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--repeat", "0"], ["--repeat 0", "at least once"]),
        (["--grace", "-1"], ["--grace -1", "0 or more"]),
        (["--grace", "nan"], ["--grace nan"]),
        (["--workers", "0"], ["--workers 0", "greater than or equal to 1"]),
        (["--setting", "kafka_acks=7"], ["kafka_acks=7", "0 (none), 1", "-1 (all"]),
        (["--setting", "prefetch=0"], ["--setting prefetch=0"]),
        (["--setting", "request_timeout_s=inf"], ["request_timeout_s=inf", "finite"]),
        (["--rate", "inf"], ["--rate inf", "finite"]),
        (["--rates", "100,inf"], ["--rates", "positive"]),
        (["--slo-p99-ms", "0"], ["--slo-p99-ms 0"]),
        (["--agents-wait", "-1"], ["--agents-wait -1"]),
    ],
)
def test_run_flags_out_of_range_are_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], words: list[str]
) -> None:
    out = tmp_path / "out"
    err = refused(capsys, "run", CHAIN, *flags, "--out", str(out))
    for word in words:
        assert word in err
    assert not out.exists()  # nothing written, nothing started


def test_agent_flags_out_of_range_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--http-port 70000" in refused(capsys, "agent", "--http-port", "70000")
    assert "--exit-idle -5" in refused(capsys, "agent", "--exit-idle", "-5")


def test_render_run_args_are_checked_when_rendering(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = refused(capsys, "render", "compose", CHAIN, "--run-args", "--repeat 0",
                  "--out", str(tmp_path / "c.yml"))  # fmt: skip
    assert "--run-args: --repeat 0" in err
    assert not (tmp_path / "c.yml").exists()


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ("services.wroker.replicas=2", ["--set services.wroker", "'wroker'", "'worker'"]),
        ("services.worker.replica=2", ["services.worker.replica is not", "'replicas'"]),
        ("services.worker.work.cpu=1", ["work.cpu is not", "'cpu_us'"]),
        ("edges[1].settings.kafka_ack=-1", ["kafka_ack is not", "'kafka_acks'"]),
        ("edges[1].mod=kafka", ["edges[1].mod is not", "'mode'"]),
        ("edges[7].mode=kafka", ["edges[7] does not exist", "[1] gateway->worker"]),
        ("edges.worker.mode=kafka", ["by its index or by FROM->TO"]),
        ("services.worker.replicas.x=1", ["replicas has no fields below it"]),
    ],
)
def test_a_set_path_names_what_exists_and_suggests_the_near_name(
    capsys: pytest.CaptureFixture[str], assignment: str, words: list[str]
) -> None:
    err = refused(capsys, "validate", CHAIN, "--set", assignment)
    for word in words:
        assert word in err
    assert " line " not in err  # the flag is to blame, not a line of the file


def test_a_set_path_may_add_a_documented_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", CHAIN, "--set", "services.worker.concurrency=2",
                 "--set", "edges[1].settings.kafka_acks=-1"]) == 0  # fmt: skip
    assert "concurrency 2" in capsys.readouterr().out


def test_render_out_dash_writes_to_stdout_and_no_file(tmp_path: Path) -> None:
    done = hopbench("render", "k8s", CHAIN, "--out", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Rendered by `hopbench render k8s")
    assert "kind: Job" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_render_does_not_replace_a_file_the_user_did_not_name(tmp_path: Path) -> None:
    mine = tmp_path / "docker-compose.yml"
    mine.write_text("my own compose file\n")
    done = hopbench("render", "compose", CHAIN, cwd=tmp_path)
    assert done.returncode == 2
    assert "docker-compose.yml exists" in done.stderr
    assert "--force" in done.stderr
    assert mine.read_text() == "my own compose file\n"
    named = hopbench("render", "compose", CHAIN, "--out", "docker-compose.yml", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert mine.read_text().startswith("# Rendered by")
    mine.write_text("mine again\n")
    forced = hopbench("render", "compose", CHAIN, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert mine.read_text().startswith("# Rendered by")
    # no temp file left; .env holds the secrets the compose file reads
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "docker-compose.yml"]


def test_validate_into_a_closed_pipe_is_quiet() -> None:
    pipeline = f"{sys.executable} -m hopbench validate {CHAIN} --mode all | true"
    done = subprocess.run(
        ["bash", "-c", pipeline + "; echo status ${PIPESTATUS[0]}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr
    assert done.stdout.strip() == "status 141"  # as a program killed by SIGPIPE


def test_compare_help_names_its_real_default() -> None:
    done = hopbench("compare", "--help")
    assert "suite file's name" in " ".join(done.stdout.split())


# --- the results folder ---------------------------------------------------------


def test_an_out_that_is_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "a file, not a folder" in refused(capsys, "run", CHAIN, "--out", str(afile))


def test_a_second_command_into_a_locked_out_is_refused_naming_the_first(
    tmp_path: Path,
) -> None:
    with OutLock(tmp_path):
        assert (tmp_path / ".hopbench.lock").read_text().strip() == str(os.getpid())
        done = hopbench("run", CHAIN, "--duration", "1", "--out", str(tmp_path))
        assert done.returncode == 2
        assert f"another hopbench (pid {os.getpid()}) is writing" in done.stderr
        suite = hopbench("compare", str(ROOT / "suites" / "quick.yaml"), "--out", str(tmp_path))
        assert suite.returncode == 2
        assert f"pid {os.getpid()}" in suite.stderr
    assert list(tmp_path.iterdir()) == []  # the lock is gone with its holder, nothing ran


def test_the_lock_of_a_killed_command_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from hopbench.config.outdir import OutLock; OutLock(Path(sys.argv[1])).acquire(); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            OutLock(tmp_path).acquire()
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
        with OutLock(tmp_path):  # the kernel let go of the lock with the process
            assert (tmp_path / ".hopbench.lock").read_text().strip() == str(os.getpid())
        assert list(tmp_path.iterdir()) == []
    finally:
        reap(holder)


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results.json"
    atomic_write_text(results, "old")

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the one os module outdir uses too
    with pytest.raises(OutputError, match=r"cannot write .*results\.json: No space left"):
        atomic_write_text(results, "new")
    assert results.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def in_private_tmpfs(mnt: Path, size: str, script: str) -> subprocess.CompletedProcess[str]:
    """A shell script run with a tmpfs of this size at mnt, in a mount namespace of its
    own: the mount goes away with the script, whatever happens."""
    mnt.mkdir()
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mnt} && {script}"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@NEEDS_MOUNTS
def test_a_read_only_or_full_out_is_refused_before_anything_starts(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    hb = f"{sys.executable} -m hopbench run {CHAIN} --duration 1"
    done = in_private_tmpfs(
        mnt, "1m",
        f"{hb} --out {mnt}/small; echo status $?; mount -o remount,ro {mnt}; "
        f"{hb} --out {mnt}/ro; echo status $?; ls -A {mnt}",
    )  # fmt: skip
    lines = done.stdout.split()
    assert lines == ["status", "2", "status", "2"], done.stdout + done.stderr
    assert f"--out {mnt}/small: only 1.0 MiB free" in done.stderr
    assert f"--out {mnt}/ro: cannot create the folder (Read-only file system)" in done.stderr
    assert "Traceback" not in done.stderr


@NEEDS_MOUNTS
@pytest.mark.integration
def test_an_out_that_fills_up_mid_command_keeps_what_was_measured(tmp_path: Path) -> None:
    """Two runs; the folder fills once the first is written: the second's results
    cannot be, and the command says so, shows both runs and keeps the first."""
    mnt = tmp_path / "mnt"
    done = in_private_tmpfs(
        mnt, "20m",
        f"{sys.executable} -m hopbench run {CHAIN} --mode http,grpc --duration 2 "
        f"--warmup 1 --out {mnt} > {tmp_path}/stdout & pid=$!; "
        f"while [ ! -e {mnt}/results.json ] && kill -0 $pid; do sleep 0.05; done; "
        f"dd if=/dev/zero of={mnt}/filler bs=64k 2>/dev/null; wait $pid; echo status $?; "
        f"rm {mnt}/filler; ls -A {mnt}; find {mnt} -name '*.tmp'; "
        f"cat {mnt}/results.json > {tmp_path}/results.json",
    )  # fmt: skip
    assert "status 1\nresults.csv\nresults.json\nruns\n" in done.stdout, done.stderr
    assert f"cannot write {mnt}/results.json: No space left on device" in done.stderr
    assert "hold the 1 run(s) written before it; 1 measured run(s) could not" in done.stderr
    assert "Traceback" not in done.stderr
    summary = (tmp_path / "stdout").read_text()
    assert "2 run(s): sent 800, completed 800, lost 0" in summary  # both, on the terminal
    kept = (tmp_path / "results.json").read_text()
    assert kept.count('"run_id"') == 1
    assert '"mode": "http"' in kept


# --- what the broker answered ---------------------------------------------------


def connect_error(url: str) -> str:
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(RabbitMqBroker(url).connect())
    return str(caught.value)


@pytest.mark.integration
@pytest.mark.skipif(CONTAINERS, reason="the local RabbitMQ's guest user")
def test_rabbitmq_errors_say_what_the_broker_answered() -> None:
    wrong = connect_error("amqp://guest:not-the-password@127.0.0.1:5672/")
    assert "refused the login of user 'guest' (ACCESS_REFUSED" in wrong
    assert "not-the-password" not in wrong
    assert "Start a local server" not in wrong
    vhost = connect_error("amqp://guest:guest@127.0.0.1:5672/no-such-vhost")
    assert "refused virtual host 'no-such-vhost' (NOT_ALLOWED" in vhost
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nothing = connect_error(f"amqp://guest:guest@127.0.0.1:{port}/")
    assert f"nothing listens at 127.0.0.1:{port} (connection refused)" in nothing
    assert "Start a local server" in nothing
