"""The report a chooser reads, and the terminal's one summary: the verdict first (the
winner of each group, the bottleneck of a run past its knee, the failures), failed runs
shown failed and never drawn, probes as evidence, the suite's name as the title, the
terminal within 100 columns with each row once; and the page as headless Chromium
renders it."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hopbench.cli import main
from hopbench.config.deployment import Deployment
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.results.bottleneck import find_bottleneck
from hopbench.results.report import render_html, write_report
from hopbench.results.report_charts import load_curves
from hopbench.results.report_sections import short_name
from hopbench.results.schema import Results, RunResult
from hopbench.results.summary import FIND_MAX, summary
from hopbench.results.terminal import WIDTH, terminal_summary
from hopbench.run import suite
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process
from tests.test_bottleneck import LINEAR, dressed, process, queue

ROOT = Path(__file__).resolve().parent.parent
WHERE = {"kafka": "Tansu 0.6.0, embedded", "rabbitmq": "3.10.8 at 127.0.0.1:5672"}
HYBRID = ["edges.gateway->worker.mode=kafka", "edges.gateway->worker.pattern=publish-subscribe"]


def chain(
    mode: str = "http",
    rate: float = 200,
    pattern: str | None = None,
    payload: int = 10,
    sets: list[str] | None = None,
    variant: str = "",
) -> RunResult:
    """A real (in-memory) run of the chain, labelled with the broker a real one names."""
    topology = load_topology(TOPOLOGIES / "chain.yaml", sets or [], mode, pattern)
    load = LoadSpec(rate=rate, duration_s=0.3, warmup_s=0, payload_bytes=payload)
    run = asyncio.run(run_in_process(topology, load))
    run.variant = variant or mode
    run.brokers = {m: {"where": WHERE[m]} for m in topology.modes if m in WHERE}
    return run


def past_its_knee(run: RunResult) -> RunResult:
    """The run dressed in the samples of a CPU-bound gateway whose in-flight grew."""
    calls = queue("loadgen/0 -> gateway (http)", "calls", "loadgen/0", "gateway", LINEAR,
                  "loadgen->gateway")  # fmt: skip
    cpu = process("gateway/0", [None, 0.99, 0.99, 0.98, 1.0, 0.99, 0.5])
    hot = dressed(run, [calls], [cpu], run_id="pastknee", rate=400)
    hot.load = {**hot.load, "rate": 400}
    hot.bottleneck = find_bottleneck(hot, "completed 200/s of 400/s")
    assert hot.bottleneck is not None
    return hot


@pytest.fixture(scope="module")
def compared() -> Results:
    """http, grpc and kafka at one load, and an http run past its knee at another."""
    runs = [chain(mode) for mode in ("http", "grpc", "kafka")]
    return Results(runs=[*runs, past_its_knee(chain("http"))])


def verdict_of(page: str) -> str:
    start = page.index("<h2 id='verdict'>")
    return page[start : page.index("<h2>Summary</h2>")]


def svgs(page: str) -> str:
    return "".join(re.findall(r"<svg.*?</svg>", page, re.S))


def test_the_verdict_comes_first_naming_each_groups_winner_and_the_bottleneck(
    compared: Results,
) -> None:
    page = render_html(compared)
    verdict = verdict_of(page)
    assert page.index("Verdict") < page.index("<h2>Summary</h2>") < page.index("<svg")
    rows = [r for r in summary(compared) if r.load == "200/s"]
    assert len(rows) == 3  # one group: the three variants' round trips at 200/s
    winner = next(r for r in rows if r.ranks.get("p50 ms") == 1)
    assert f"<b>{short_name(winner)}</b> wins on p50" in verdict
    assert "round trip, route loadgen (reply), 200/s" in verdict
    hot = compared.runs[-1]
    assert hot.bottleneck is not None
    assert hot.bottleneck.text in verdict
    assert "gateway/0 at 99 % CPU" in verdict
    assert "Did not keep up or over the SLO: http" in verdict  # the 400/s group's only row


def test_failed_runs_are_shown_failed_and_never_drawn() -> None:
    ok, broken = chain("http", 300), chain("grpc", 300)
    broken.status, broken.failure = "failed", "10 error(s); the first, at loadgen/0: too big"
    page = render_html(Results(runs=[ok, broken]))
    verdict = verdict_of(page)
    assert "Failed (never ranked, never drawn)" in verdict
    assert "grpc @ 300/s (run" in verdict
    assert "too big" in verdict
    assert "http @ 300/s" in svgs(page)  # the ok run is drawn (legend text in the SVG)
    assert "grpc" not in svgs(page)  # the failed one in no chart
    assert "<b>http</b>" in verdict
    assert "<b>grpc</b>" not in verdict


def test_probes_are_evidence_of_the_knee_not_variants() -> None:
    runs = [chain("http", 200)]
    probes = [chain("http", rate) for rate in (350, 700)]
    for probe in probes:
        probe.probe = True
    probes[1].status, probes[1].failure = "failed", "1 error(s)"
    evidence = [{"rate": p.target_rate, "run_id": p.run_id, "passed": not p.failed,
                 "reason": "p99 over the SLO" if p.failed else ""} for p in probes]  # fmt: skip
    knee = {"cell": "http find-max", "mode": "http", "variant": "http",
            "max_sustainable_rate": 350.0, "evidence": evidence}  # fmt: skip
    results = Results(runs=runs + probes, max_sustainable=[knee])
    assert {r.load for r in summary(results)} == {"200/s", FIND_MAX}  # no row per probe
    page = render_html(results)
    assert "Knee searches" in page
    assert "http find-max: knee 350/s" in page
    searches = page[page.index("Knee searches") : page.index("<h2>Runs</h2>")]
    assert "350/s" in searches
    assert "700/s" in searches
    assert "1 error(s)" in searches
    assert "@ 350/s" not in svgs(page)
    assert "@ 700/s" not in svgs(page)
    assert "knee 350/s" in svgs(page)  # on the curve of its cell
    assert "max sustainable rate" in verdict_of(page)
    text = terminal_summary(results)
    assert re.search(r"http, round trip: 350/s( #1)?; probes: 350/s p99 [\d.]+ ms", text)
    assert "700/s failed" in text


def test_one_line_per_cell_over_its_loads_never_between_payloads() -> None:
    runs = [chain("http", rate, payload=payload) for payload in (100, 1000) for rate in (100, 200)]
    curves = load_curves(summary(Results(runs=runs)))
    assert sorted(curves) == ["http, round trip, 1000B", "http, round trip, 100B"]
    assert all(sorted(r.load for r in points) == ["100/s", "200/s"] for points in curves.values())


def test_the_title_is_the_suites_name_for_compare_and_report(tmp_path: Path) -> None:
    spec, _, session = suite.prepare(ROOT / "suites/quick.yaml", tmp_path, False, Deployment())
    assert session.results.suite == {"name": "quick", "description": spec.description}
    session.results.runs.append(chain("http"))
    session.write()
    assert session.report() == 0  # what `hopbench compare` ends with
    title = "<title>hopbench: quick</title>"
    assert title in (tmp_path / "report.html").read_text()
    (tmp_path / "report.html").unlink()
    assert main(["report", str(tmp_path)]) == 0  # and `hopbench report DIR` reads it back
    page = (tmp_path / "report.html").read_text()
    assert title in page
    assert spec.description in page


def _ranked_lines(text: str) -> list[str]:
    """The first lines of the summary's rows (a row's rank is on its first line)."""
    ranked = text.split("\n\nwhere the time goes")[0]
    return [line for line in ranked.splitlines()[1:] if re.search(r"#\d", line)]


def test_the_terminal_summary_of_the_demo_fits_and_shows_each_row_once() -> None:
    runs = [chain(m, 300, p) for m in WHERE | {"http": "", "grpc": ""}
            for p in ("request-reply", "fire-and-forget")]  # fmt: skip
    runs.append(chain("http", 300, sets=HYBRID, variant="http+kafka"))
    results = Results(runs=runs)
    text = terminal_summary(results, ["results: x/results.json", "report:  x/report.html"])
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    rows = [r for r in summary(results) if r.load != FIND_MAX]
    assert len(_ranked_lines(text)) == len(rows) == 10  # 8 + the hybrid's two routes
    assert text.count("round trip, route loadgen (reply), 300/s") == 1  # one block a kind
    assert "kafka (Tansu 0.6.0, embedded)" in text  # each row names its broker
    assert "topology  mode" not in text
    assert "max sustainable" not in text
    assert text.endswith("report:  x/report.html")


def test_the_terminal_summary_of_a_suite_varying_payload_and_pattern_fits() -> None:
    runs = [chain(m, 300, p, payload) for m in ("http", "rabbitmq")
            for p in ("request-reply", "fire-and-forget") for payload in (100, 1000)
            for _ in range(2)]  # fmt: skip
    results = Results(runs=runs)
    text = terminal_summary(results)
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    rows = [r for r in summary(results) if r.load != FIND_MAX]
    assert len(rows) == 8
    assert all(len(r.runs) == 2 for r in rows)
    assert len(_ranked_lines(text)) == len(rows)
    assert "one-way to worker, route loadgen>gateway>worker, 300/s, 1000B" in text
    assert re.search(r"\[[\d.,]+-[\d.,]+\]", text)  # the spread over the repeats


BROWSER = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip


@pytest.mark.skipif(BROWSER is None, reason="Debian's chromium is not installed (make test "
                    "installs it where apt-get works)")  # fmt: skip
def test_headless_chromium_shows_the_verdict_breakdown_and_queue_timeline(
    tmp_path: Path, compared: Results
) -> None:
    path = tmp_path / "report.html"
    write_report(compared, path, "hopbench: test")

    def chromium(*args: str) -> subprocess.CompletedProcess[str]:
        profile = f"--user-data-dir={tmp_path / 'profile'}"
        done = subprocess.run([str(BROWSER), *FLAGS, profile, *args, path.as_uri()],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    dom = chromium("--dump-dom").stdout
    hot = compared.runs[-1]
    assert hot.bottleneck is not None
    verdict = dom[dom.index('id="verdict"') : dom.index("<h2>Summary</h2>")]
    assert hot.bottleneck.text in verdict
    assert "wins on" in verdict
    assert "Where the time goes: loadgen (reply)" in dom  # the stacked breakdown
    assert "Where the queue builds" in dom
    assert "loadgen/0 -&gt; gateway (http)" in dom
    assert re.search(r"<path[^>]+d=\"M", dom)  # the charts have drawn lines
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,2000", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000
