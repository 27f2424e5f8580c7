"""The report: self-contained (inline SVG, nothing fetched), every chart there, the
summary ranking the variants; and headless Chromium renders it offline."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.report import summary, summary_table, write_report
from hopbench.results.schema import Results
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process


@pytest.fixture(scope="module")
def results() -> Results:
    runs = []
    for mode in ("http", "kafka"):
        for rate in (200, 400):
            topology = load_topology(TOPOLOGIES / "chain.yaml", mode=mode)
            load = LoadSpec(rate=rate, duration_s=1, warmup_s=0.2, payload_bytes=10)
            run = asyncio.run(run_in_process(topology, load))
            run.cell = f"{mode} 10B {rate}/s"
            runs.append(run)
    knee = {"cell": "http 10B find-max", "mode": "http", "max_sustainable_rate": 350.0}
    return Results(runs=runs, max_sustainable=[knee])


def test_the_report_is_self_contained_with_every_chart(tmp_path: Path, results: Results) -> None:
    path = tmp_path / "report.html"
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
    assert {(r.variant, r.load) for r in rows} == {
        ("http", "200/s"), ("http", "400/s"), ("kafka", "200/s"), ("kafka", "400/s")
    }  # fmt: skip
    for load in ("200/s", "400/s"):
        ranks = sorted(r.ranks["p99 ms"] for r in rows if r.load == load)
        assert ranks == [1, 2]
    http = next(r for r in rows if r.variant == "http")
    assert http.max_sustainable == 350.0
    assert "max sustainable" in summary_table(rows)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_headless_chromium_renders_the_report_offline(tmp_path: Path, results: Results) -> None:
    path = tmp_path / "report.html"
    write_report(results, path, "hopbench: test")
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count("<svg") == 3
    assert "Latency by percentile" in dom
    assert re.search(r"<path[^>]+d=\"M", dom)  # the charts have drawn lines
