"""The report: self-contained (inline SVG, nothing fetched), every chart there, the
summary ranking the variants (tests/test_report_page.py: the verdict, the terminal,
headless Chromium)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.report import summary, summary_table, write_report
from hopbench.results.schema import Results, RunResult
from hopbench.results.status import judge
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process


def chain_run(mode: str, rate: float, pattern: str | None = None, payload: int = 10) -> RunResult:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode=mode, pattern=pattern)
    load = LoadSpec(rate=rate, duration_s=1, warmup_s=0.2, payload_bytes=payload)
    run = asyncio.run(run_in_process(topology, load))
    run.cell = f"{mode} {payload}B {rate:g}/s"
    return run


@pytest.fixture(scope="module")
def results() -> Results:
    runs = [chain_run(mode, rate) for mode in ("http", "kafka") for rate in (200, 400)]
    probes = [chain_run("http", rate) for rate in (350, 700)]
    for probe in probes:
        probe.probe, probe.cell = True, "http 10B find-max"
    probes[1].status, probes[1].failure = "failed", "1 error(s)"
    evidence = [
        {"rate": p.target_rate, "run_id": p.run_id, "passed": not p.failed, "reason": ""}
        for p in probes
    ]
    knee = {"cell": "http 10B find-max", "mode": "http", "variant": "http",
            "max_sustainable_rate": 350.0, "evidence": evidence}  # fmt: skip
    return Results(runs=runs + probes, max_sustainable=[knee])


def test_the_report_is_self_contained_with_every_chart(tmp_path: Path, results: Results) -> None:
    path = tmp_path / "report.html"
    # and a one-way delivery beside the round trips: where the time goes, per route
    one_way = chain_run("kafka", 200, "publish-subscribe")
    results = results.model_copy(update={"runs": [*results.runs, one_way]})
    write_report(results, path, "hopbench: test")
    page = path.read_text()
    # spectrum, latency against throughput, timeline, and where the time goes per route
    routes = {route.route for run in results.runs for route in run.routes}
    assert routes == {"loadgen (reply)", "loadgen>gateway>worker"}
    assert page.count("<svg") == 3 + len(routes)
    for chart in ("Latency by percentile", "Latency against achieved throughput",
                  "p99 latency per second", "Where the time goes: loadgen (reply)",
                  "Where the time goes: loadgen&gt;gateway&gt;worker"):  # fmt: skip
        assert chart in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page
    assert "knee 350/s" in page
    assert page.count("<details>") == len(results.runs)  # the configuration of every run


def test_the_summary_ranks_variants_at_each_load(results: Results) -> None:
    rows = summary(results)
    assert {(r.variant, r.measures, r.load) for r in rows} == {
        ("http", "round trip", "200/s"), ("http", "round trip", "400/s"),
        ("kafka", "round trip", "200/s"), ("kafka", "round trip", "400/s"),
        ("http", "round trip", "find-max"),
    }  # fmt: skip
    for load in ("200/s", "400/s"):
        ranks = sorted(r.ranks["p99 ms"] for r in rows if r.load == load)
        assert ranks == [1, 2]
    # the probes are evidence of the knee: one row, ranked on the knee alone
    (knee,) = [r for r in rows if r.load == "find-max"]
    assert knee.max_sustainable == 350.0
    assert [r.target_rate for r in knee.runs] == [350]
    assert "p99 ms" not in knee.ranks
    assert "max sustainable" in summary_table(rows)


def test_failed_runs_are_shown_failed_and_never_ranked() -> None:
    ok = chain_run("http", 300)
    broken = chain_run("grpc", 300)
    broken.status, broken.failure = "failed", "10 error(s); the first, at loadgen/0: too big"
    broken.latency_us.p50 = broken.latency_us.p99 = 0  # what a run with no completions shows
    rows = summary(Results(runs=[ok, broken]))
    by_variant = {r.variant: r for r in rows}
    # in-process runs measure no CPU: n/m, unranked, never a zero that would win
    assert by_variant["http"].ranks == {"p50 ms": 1, "p99 ms": 1, "done/s": 1}
    assert "n/m" in summary_table(rows)
    assert by_variant["grpc"].ranks == {}
    assert by_variant["grpc"].failure == "10 error(s); the first, at loadgen/0: too big"
    table = summary_table(rows)
    assert "failed:\n  grpc round trip @ 300/s: 10 error(s)" in table


def test_round_trips_and_one_way_deliveries_never_share_a_rank() -> None:
    runs = [chain_run("rabbitmq", 300, pattern) for pattern in ("request-reply", "fire-and-forget")]
    runs.append(chain_run("http", 300))
    rows = summary(Results(runs=runs))
    assert {(r.variant, r.measures, r.ranks["p50 ms"]) for r in rows} >= {
        ("rabbitmq", "one-way to worker", 1)
    }
    round_trips = sorted(r.ranks["p50 ms"] for r in rows if r.measures == "round trip")
    assert round_trips == [1, 2]
    assert "pattern" in summary_table(rows)  # a varying dimension gets its column


def test_unlike_cells_are_never_repeats() -> None:
    """Two payloads (or replica counts) are two cells: two rows, not one row of two runs."""
    runs = [chain_run("http", 300, payload=payload) for payload in (100, 1000)]
    runs.append(chain_run("http", 300, payload=100))
    rows = summary(Results(runs=runs))
    assert sorted((r.shown["payload"], len(r.runs)) for r in rows) == [("1000B", 1), ("100B", 2)]
    assert sorted(r.ranks["p50 ms"] for r in rows) == [1, 1]  # each alone in its group


def test_every_run_is_judged_against_the_slo() -> None:
    run = chain_run("http", 300)
    judge(run, slo_p99_ms=run.latency_us.p99 / 1000 / 2)  # half its own p99: over
    assert (run.status, run.slo_p99_ms, run.slo_met) == ("ok", run.latency_us.p99 / 2000, False)
    assert ">SLO" in summary_table(summary(Results(runs=[run])))
    judge(run, slo_p99_ms=run.latency_us.p99 / 1000 * 2)
    assert run.slo_met is True
    judge(run)
    assert run.slo_met is None
