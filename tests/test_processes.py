"""Child processes: ready before load, drain and report on SIGTERM; a broker that
does not answer fails its row with a clear sentence and keeps the other rows."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.control.child import Child
from hopbench.protocol.messages import Ready, ServiceReport
from hopbench.run.provision import allocate_endpoints
from tests.conftest import TOPOLOGIES

pytestmark = pytest.mark.integration


def test_a_service_reports_ready_then_drains_and_reports_on_sigterm(tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http")
    spec = RunSpec(
        run_id="sigterm1",
        topology=topology.to_dict(),
        load=LoadSpec(rate=1, duration_s=1, warmup_s=0, payload_bytes=1),
        endpoints=allocate_endpoints(topology),
    )
    spec_path = tmp_path / "spec.json"
    spec.write(spec_path)

    async def scenario() -> tuple[ServiceReport, int | None, str]:
        child = await Child.spawn(
            "worker/0", "hopbench.services",
            ["--service", "worker", "--replica", "0", "--spec", str(spec_path)],
            tmp_path / "worker.log",
        )  # fmt: skip
        proc = child.proc
        assert proc is not None
        try:
            await child.expect(Ready, 30)
            ps = await asyncio.create_subprocess_exec(
                "ps", "-ww", "-o", "args=", "-p", str(proc.pid), stdout=subprocess.PIPE
            )  # fmt: skip
            args, _ = await ps.communicate()
            proc.send_signal(signal.SIGTERM)
            report = await child.expect(ServiceReport, 30)
            return report, await asyncio.wait_for(proc.wait(), 30), args.decode()
        finally:
            await child.kill()

    report, status, args = asyncio.run(scenario())
    assert status == 0
    assert report.handled == 0
    assert "--service worker --replica 0" in args  # ps tells which service and replica


def test_an_unreachable_rabbitmq_fails_its_row_and_keeps_the_others(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "run", str(TOPOLOGIES / "chain.yaml"),
         "--mode", "rabbitmq,http", "--rate", "100", "--duration", "1", "--warmup", "0.5",
         "--rabbitmq-url", "amqp://guest:guest@127.0.0.1:9/", "--brokers-wait", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "RabbitMQ does not answer at amqp://guest:***@127.0.0.1:9/" in done.stderr
    assert "rabbitmq-server -detached" in done.stderr
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["mode"] for r in runs] == ["http"]
    assert runs[0]["completed"] == runs[0]["sent"] == 100
