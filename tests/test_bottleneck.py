"""The bottleneck rules on samples whose answer is known: what counts as growing, when
it began, which queue grew first, and which resource ran out; and the report's
section that shows them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.bottleneck import find_bottleneck, growth
from hopbench.results.report import write_report
from hopbench.results.sampled import ProcessSeries, QueueSeries, Samples
from hopbench.results.schema import Results, RunResult
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process

T = [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # a 4 s window, then a second of drain


@pytest.fixture(scope="module")
def chain() -> RunResult:
    """A real result of the chain (loadgen -> gateway -> worker), to dress in samples."""
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http")
    load = LoadSpec(rate=50, duration_s=0.3, warmup_s=0, payload_bytes=10)
    return asyncio.run(run_in_process(topology, load))


def queue(
    name: str,
    kind: str,
    holder: str,
    waits_for: str,
    values: list[Any],
    edge: str = "",
    mode: str = "http",
) -> QueueSeries:
    return QueueSeries.model_validate(
        {
            "name": name,
            "kind": kind,
            "holder": holder,
            "waits_for": waits_for,
            "edge": edge,
            "mode": mode,
            "values": values,
        }
    )


BUSY_SLEEPS = [None, 300.0, 310.0, 290.0, 305.0, 300.0, 280.0]  # an event loop that waits


def process(
    name: str,
    cpu: list[float | None],
    states: str = "S" * len(T),
    sleeps: list[float | None] = BUSY_SLEEPS,
) -> ProcessSeries:
    return ProcessSeries(name=name, pid=1, cpu=cpu, state=list(states), sleeps_per_s=sleeps)


def dressed(
    run: RunResult,
    queues: list[QueueSeries],
    processes: list[ProcessSeries],
    host_cpu: float = 0.5,
    rate: float = 300,
    **changes: Any,
) -> RunResult:
    samples = Samples(
        interval_s=1.0,
        t_s=T,
        cores=2,
        host_cpu=[None, *[host_cpu] * (len(T) - 1)],
        run_queue=[1] * len(T),
        cpu_pressure=[None] * len(T),
        queues=queues,
        processes=processes,
        sampler_cpu_s=0.01,
    )
    update = {"samples": samples, "target_rate": rate, "duration_s": 4.0, **changes}
    return run.model_copy(update=update)


IDLE = [None, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
LINEAR = [0, 2, 102, 203, 301, 402, 300]


def test_a_cpu_bound_service_names_itself_and_its_growing_in_flight(chain: RunResult) -> None:
    run = dressed(
        chain,
        [
            queue(
                "loadgen/0 -> gateway (http)",
                "calls",
                "loadgen/0",
                "gateway",
                LINEAR,
                "loadgen->gateway",
            )
        ],
        [
            process("gateway/0", [None, 0.99, 0.99, 0.98, 1.0, 0.99, 0.5]),
            process("worker/0", IDLE),
            process("loadgen/0", IDLE),
        ],
    )
    found = find_bottleneck(run, "completed 200/s of 300/s")
    assert found is not None
    assert found.queue is not None
    assert found.queue.queue == "loadgen/0 -> gateway (http)"
    assert found.queue.per_s == pytest.approx(100, rel=0.05)
    assert found.queue.from_t_s == 0.0
    assert (found.resource.kind, found.resource.name) == ("cpu", "gateway/0")
    assert found.text == (
        "gateway/0 at 99 % CPU; its HTTP in-flight (calls from loadgen/0) grew ~100/s from t=0 s"
    )


def test_a_queue_that_does_not_grow_is_not_a_bottleneck(chain: RunResult) -> None:
    noisy = [3, 0, 4, 1, 5, 2, 3]  # busy, but level: what a kept-up run looks like
    level = [40, 41, 40, 42, 41, 40, 41]  # a steady prefetch's worth
    run = dressed(
        chain,
        [
            queue("a", "calls", "loadgen/0", "gateway", noisy, "loadgen->gateway"),
            queue("b", "handling", "gateway/0", "gateway", level),
        ],
        [process("gateway/0", IDLE)],
    )
    found = find_bottleneck(run, "p99 over the SLO")
    assert found is not None
    assert found.queue is None
    assert found.resource.kind == "none"
    assert found.text.endswith("no queue grew measurably")


def test_growth_starts_where_the_queue_left_its_low_point() -> None:
    late = queue("q", "calls", "gateway/0", "worker", [0, 1, 0, 1, 32, 33, 33])
    found = growth(late, T, range(1, 6), threshold=1.0)
    assert found is not None
    assert found.from_t_s == 2.0  # the last sample before it stood clearly above 0
    assert found.per_s == pytest.approx(31, rel=0.05)
    assert growth(late, T, range(1, 6), threshold=50.0) is None  # slope under the threshold
    gaps = queue("q", "calls", "gateway/0", "worker", [None, None, 5, None, None, 9, None])
    assert growth(gaps, T, range(1, 6), threshold=1.0) is None  # too few samples to fit


def test_a_stopped_replica_is_named_through_the_deepest_queue(chain: RunResult) -> None:
    # worker/0 frozen from t=1: every queue upstream grows in the same second
    run = dressed(
        chain,
        [
            queue(
                "loadgen/0 -> gateway (http)",
                "calls",
                "loadgen/0",
                "gateway",
                [0, 1, 1, 201, 400, 600, 400],
                "loadgen->gateway",
            ),
            queue(
                "gateway/0 handling", "handling", "gateway/0", "gateway", [0, 0, 1, 32, 32, 32, 20]
            ),
            queue(
                "gateway/0 -> worker (http)",
                "calls",
                "gateway/0",
                "worker",
                [0, 0, 1, 32, 32, 32, 20],
                "gateway->worker",
            ),
        ],
        [
            process("gateway/0", IDLE),
            process("loadgen/0", IDLE),
            process("worker/0", [None, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0], "SSSTTTS"),
        ],
        rate=200,
    )
    found = find_bottleneck(run, "completed 67/s of 200/s")
    assert found is not None
    assert found.queue is not None
    assert found.queue.queue == "gateway/0 -> worker (http)"
    assert found.queue.from_t_s == 1.0
    assert (found.resource.kind, found.resource.name) == ("stopped", "worker/0")
    assert found.text.startswith("worker/0 stopped (state T) at t=2 s")


def test_a_broker_consumer_at_its_prefetch_is_named_with_its_queue(chain: RunResult) -> None:
    edges = [e.model_copy(update={"mode": "rabbitmq"}) for e in chain.edges]
    run = dressed(
        chain,
        [
            queue(
                "rabbitmq hb-x-gateway-worker",
                "broker_queue",
                "rabbitmq",
                "worker",
                LINEAR,
                "gateway->worker",
                "rabbitmq",
            ),
            queue(
                "worker/0 handling",
                "handling",
                "worker/0",
                "worker",
                [0, 1, 0, 1, 1, 1, 1],
                mode="",
            ),
        ],
        [process("worker/0", IDLE), process("rabbitmq-server", IDLE)],
        settings={**chain.settings, "prefetch": 1},
        edges=edges,
    )
    found = find_bottleneck(run, "completed 50/s of 150/s")
    assert found is not None
    assert found.queue is not None
    assert found.queue.kind == "broker_queue"
    assert (found.resource.kind, found.resource.name) == ("concurrency", "worker/0")
    assert "RabbitMQ queue hb-x-gateway-worker (gateway->worker) grew ~100/s" in found.text


def test_a_contended_host_still_names_the_service_that_wants_the_core(chain: RunResult) -> None:
    # the service got 65 % of a core, but wanted all of it: its loop never slept
    run = dressed(
        chain,
        [
            queue(
                "loadgen/0 -> gateway (http)",
                "calls",
                "loadgen/0",
                "gateway",
                LINEAR,
                "loadgen->gateway",
            )
        ],
        [
            process("gateway/0", [None] + [0.65] * 6, sleeps=[None, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0]),
            process("other", IDLE),
        ],
        host_cpu=1.0,
    )
    found = find_bottleneck(run, "completed 150/s of 300/s")
    assert found is not None
    assert (found.resource.kind, found.resource.name) == ("cpu", "gateway/0")
    assert "it never waited for work (0.6 sleeps/s), at 65 % of a core" in found.resource.detail
    idle_service = dressed(
        chain,
        [
            queue(
                "loadgen/0 -> gateway (http)",
                "calls",
                "loadgen/0",
                "gateway",
                LINEAR,
                "loadgen->gateway",
            )
        ],
        [process("gateway/0", IDLE)],
        host_cpu=0.97,
    )
    found = find_bottleneck(idle_service, "completed 150/s of 300/s")
    assert found is not None
    assert (found.resource.kind, found.resource.name) == ("host_cpu", "host")


def test_an_unsampled_run_has_no_bottleneck(chain: RunResult) -> None:
    assert chain.samples is None
    assert find_bottleneck(chain, "anything") is None


def test_the_report_shows_the_verdict_and_the_queue_timeline(
    tmp_path: Path, chain: RunResult
) -> None:
    run = dressed(
        chain,
        [
            queue(
                "loadgen/0 -> gateway (http)",
                "calls",
                "loadgen/0",
                "gateway",
                LINEAR,
                "loadgen->gateway",
            )
        ],
        [process("gateway/0", [None, 0.99, 0.99, 0.98, 1.0, 0.99, 0.5])],
    )
    run.bottleneck = find_bottleneck(run, "completed 200/s of 300/s")
    path = tmp_path / "report.html"
    write_report(Results(runs=[run, chain]), path, "hopbench: test")
    page = path.read_text()
    assert "Where the queue builds" in page
    assert "gateway/0 at 99 % CPU; its HTTP in-flight" in page
    # the three charts, where the time goes per route, and this run's queue timeline
    routes = {r.route for one in (run, chain) for r in one.routes if r.breakdown is not None}
    assert page.count("<svg") == 3 + len(routes) + 1
    assert "loadgen/0 -&gt; gateway (http)" in page  # the queue, in the chart's legend
