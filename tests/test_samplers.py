"""What the per-second samples read: a stopped process reads as stopped, a missing
one as None (never 0), the host's files parse with and without PSI, a worker held at
its in-flight limit counts what it owes, and a service's mean in flight is exact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hopbench import clock
from hopbench.config.topology import Edge, Topology
from hopbench.loadgen.schedule import OpenSchedule
from hopbench.loadgen.worker import LoadWorker
from hopbench.measure.samplers import cpu_share, find_pids, host_stat, proc_stat
from hopbench.proto.hopbench_pb2 import Envelope
from hopbench.results.sampled import Samples
from hopbench.services.runtime import ServiceRuntime
from hopbench.transports.base import Transport
from hopbench.transports.context import TransportContext


def test_a_process_reads_its_cpu_and_state_and_a_stopped_one_reads_stopped() -> None:
    own = proc_stat(os.getpid())
    assert own is not None
    assert own.state == "R"  # reading it, so running
    assert own.cpu_s > 0
    assert own.sleeps >= 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while (stat := proc_stat(child.pid)) is not None and stat.state != "T":
            assert time.monotonic() < deadline, stat
            time.sleep(0.01)
        assert stat is not None
        assert stat.state == "T"
    finally:
        child.kill()
        child.wait()
    assert proc_stat(child.pid) is None  # gone: None, not 0


def _fake_proc(root: Path, pressure: str | None) -> Path:
    (root / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n")
    (root / "loadavg").write_text("0.50 0.40 0.30 3/120 4242\n")
    if pressure is not None:
        (root / "pressure").mkdir()
        (root / "pressure" / "cpu").write_text(pressure)
    return root


def test_the_host_reads_cpu_run_queue_and_pressure_where_the_kernel_has_it(
    tmp_path: Path,
) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    psi = "some avg10=12.50 avg60=3.00 avg300=1.00 total=5\nfull avg10=0.00 total=0\n"
    (tmp_path / "a").mkdir()
    with_psi = host_stat(_fake_proc(tmp_path / "a", psi))
    assert with_psi.busy_s == pytest.approx(150 / ticks)
    assert with_psi.total_s == pytest.approx(1000 / ticks)
    assert with_psi.runnable == 3
    assert with_psi.cpu_pressure == 12.5
    (tmp_path / "b").mkdir()
    without = host_stat(_fake_proc(tmp_path / "b", None))
    assert without.cpu_pressure is None  # no PSI: unknown, not 0
    real = host_stat()
    assert 0 <= real.busy_s <= real.total_s
    assert real.runnable >= 1


def test_cpu_share_is_a_share_of_one_core() -> None:
    assert cpu_share(1.0, 1.5, 0.5) == 1.0
    assert cpu_share(1.0, 1.2, 2.0) == pytest.approx(0.1)
    assert cpu_share(2.0, 1.0, 1.0) == 0.0  # a counter never runs backwards
    assert cpu_share(1.0, 2.0, 0.0) == 0.0


def test_find_pids_matches_command_lines(tmp_path: Path) -> None:
    for pid, argv in ((10, b"/usr/lib/erlang/bin/beam.smp\0-s\0rabbit\0boot\0"),
                      (11, b"python\0-m\0hopbench\0"), (12, b"")):  # fmt: skip
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(argv)
    (tmp_path / "self").mkdir()
    assert find_pids(lambda a: "beam.smp" in a and "-s rabbit boot" in a, tmp_path) == [10]
    assert find_pids(lambda a: "hopbench" in a, tmp_path) == [11]


class _Stuck(Transport):
    """Never answers: every send stays in flight."""

    mode = "inmemory"

    async def start(self) -> None:
        pass

    async def request(self, edge: Edge, env: Envelope) -> Envelope:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


def test_a_worker_at_its_in_flight_limit_counts_its_backlog() -> None:
    topology = Topology.from_dict(
        {
            "name": "t",
            "services": {"s": {}},
            "edges": [{"from": "loadgen", "to": "s", "mode": "http"}],
        }
    )
    context = TransportContext(run_id="r", service="loadgen", replica=0, topology=topology)
    worker = LoadWorker(topology, "r", 0, _Stuck(context), 10, max_in_flight=5)

    async def scenario() -> tuple[int, int, int]:
        start = clock.now_ns()
        before = worker.backlog(start)
        schedule = OpenSchedule(start, rate=1000, duration_s=2, warmup_s=0)
        running = asyncio.ensure_future(worker.run(schedule))
        await asyncio.sleep(0.3)
        owed = worker.backlog(clock.now_ns())
        in_flight = worker.in_flight
        running.cancel()
        for task in list(worker._tasks):
            task.cancel()
        await asyncio.gather(running, *worker._tasks, return_exceptions=True)
        return before, owed, in_flight

    before, owed, in_flight = asyncio.run(scenario())
    assert before == 0  # not running: owes nothing
    assert in_flight == 5  # held at the limit
    assert owed >= 100  # ~300 due in 0.3 s at 1000/s, 5 sent; a slow loop only owes more


def test_a_service_reports_its_mean_in_flight_since_the_last_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the runtime's clock, moved by hand: two messages each held for exactly 1 s
    now = [0]
    monkeypatch.setattr(clock, "now_ns", lambda: now[0])
    topology = Topology.from_dict(
        {
            "name": "t",
            "services": {"s": {"work": {"io_ms": 20}}},
            "edges": [{"from": "loadgen", "to": "s", "mode": "http"}],
        }
    )
    runtime = ServiceRuntime(topology, "s", 0, "run", {})

    async def scenario() -> tuple[int, float, float]:
        assert runtime.mean_in_flight() == 0.0
        edge = topology.entry_edge
        calls = [asyncio.ensure_future(runtime.handle(edge, Envelope(run_id="run", seq=i), 0))
                 for i in range(2)]  # fmt: skip
        await asyncio.sleep(0)  # both inside their handlers, at t = 0
        during = runtime.in_flight
        now[0] = 1_000_000_000
        await asyncio.gather(*calls)  # both leave at t = 1 s
        now[0] = 4_000_000_000
        first = runtime.mean_in_flight()  # 2 message-seconds over 4 s
        now[0] = 5_000_000_000
        return during, first, runtime.mean_in_flight()  # nothing held since

    during, first, then = asyncio.run(scenario())
    assert during == 2
    assert first == pytest.approx(0.5)
    assert then == 0.0
    assert runtime.calls == {}  # no out-edges: nothing called


def test_a_kafka_whose_lag_cannot_be_read_leaves_nulls_and_says_why() -> None:
    from hopbench.brokers.procs import free_port
    from hopbench.config.runspec import LoadSpec, RunSpec
    from hopbench.run.fleet import Fleet
    from hopbench.run.phases import Brokers, Window
    from hopbench.run.sampling import Sampler

    class Nowhere:  # a Kafka by address where none listens
        bootstrap = f"127.0.0.1:{free_port()}"

    topology = {"name": "t", "services": {"s": {}},
                "edges": [{"from": "loadgen", "to": "s", "mode": "kafka"}]}  # fmt: skip
    load = LoadSpec(rate=10, duration_s=1, warmup_s=0, payload_bytes=1)
    spec = RunSpec(run_id="r1", topology=topology, load=load, kafka_bootstrap=Nowhere.bootstrap)
    brokers = Brokers(kafka=Nowhere(), described={"kafka": {"kind": "test", "version": "0"}})  # type: ignore[arg-type]

    async def scenario() -> Samples:
        later = time.monotonic_ns() + 3600 * 10**9  # the loop itself never ticks
        sampler = Sampler(Fleet(), brokers, spec, Window(later, later))
        await sampler.start()
        for k in range(2):
            await sampler.tick(k)
        return await sampler.stop()

    samples = asyncio.run(scenario())
    (lag,) = samples.queues
    assert lag.kind == "consumer_lag"
    assert lag.name == "kafka group hb-r1-s"
    assert lag.values == [None, None]  # unknown, never 0
    assert "cannot read consumer lag" in lag.note
    assert any("lag missing" in note for note in samples.notes)
    assert len(samples.t_s) == len(samples.host_cpu) == len(samples.run_queue) == 2
    (orchestrator,) = samples.processes
    assert orchestrator.name == "orchestrator"
    assert orchestrator.state[0] == "R"  # itself, reading
