"""`hopbench diff` on constructed results: the verdict per metric from the repeats
(Mann–Whitney U and a minimum effect), the rule for too few repeats, cells matched by
every dimension and route by route, failures never better, and the exit status CI
gates on. The end-to-end cases with real runs are in tests/test_diff_runs.py."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from hopbench.cli import main
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.errors import ConfigError
from hopbench.results.diff import (
    BASELINE_FAILED,
    BETTER,
    FAILED,
    NOISE,
    NOT_MEASURED,
    ONLY_BASELINE,
    ONLY_CANDIDATE,
    TOO_FEW,
    WORSE,
    Diff,
    Method,
    diff_results,
    read_side,
    smallest_p,
)
from hopbench.results.difftable import diff_json, render_diff
from hopbench.results.schema import SCHEMA, Results, RunResult
from tests.conftest import TOPOLOGIES
from tests.inprocess import run_in_process

ROUND_TRIP = "loadgen (reply)"
# five runs a side: their p50 (ms), as a loaded machine gives them
P50S = [2.21, 2.37, 2.61, 2.33, 2.45]


def measured(pattern: str | None = None) -> RunResult:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="http", pattern=pattern)
    load = LoadSpec(rate=200, duration_s=0.5, warmup_s=0.1, payload_bytes=10)
    return asyncio.run(run_in_process(topology, load))


@pytest.fixture(scope="module")
def template() -> RunResult:
    """One real run of the chain; the repeats below are copies with chosen numbers."""
    return measured()


def repeat(template: RunResult, p50_ms: float, cpu: float | None = 2400.0, rate: float = 200.0,
           failure: str | None = None) -> RunResult:  # fmt: skip
    """A copy of the run at this rate, with this p50 (p99 four times it) and CPU."""
    run = template.model_copy(deep=True)
    run.run_id = f"{template.run_id}-{p50_ms}-{cpu}-{rate}"
    run.load = {**run.load, "rate": rate}
    route = next(r for r in run.routes if r.route == ROUND_TRIP)
    route.latency_us.p50 = p50_ms * 1000
    route.latency_us.p99 = p50_ms * 4000
    run.completion_rate, run.cpu_ms_per_1000 = rate, cpu
    if failure:
        run.status, run.failure = "failed", failure
    return run


def side(template: RunResult, p50s: list[float], scale: float = 1.0, cpu: float | None = 2400.0,
         rate: float = 200.0, failure: str | None = None) -> Results:  # fmt: skip
    return Results(runs=[repeat(template, p * scale, cpu, rate, failure) for p in p50s])


def compare(baseline: Results, candidate: Results, method: Method | None = None) -> Diff:
    return diff_results(baseline, candidate, method or Method(), ("base", "cand"))


def verdicts(found: Diff) -> dict[str, str]:
    (row,) = [r for r in found.rows if r.route == ROUND_TRIP]
    return {m.metric: m.verdict for m in row.metrics}


def test_the_same_numbers_in_another_order_are_within_noise(template: RunResult) -> None:
    found = compare(side(template, P50S), side(template, P50S[::-1]))
    assert verdicts(found) == dict.fromkeys(("p50", "p99", "throughput", "cpu"), NOISE)
    assert found.verdict == NOISE
    assert found.exit_status() == 0


def test_a_clearly_slower_candidate_is_worse_and_exits_1(template: RunResult) -> None:
    found = compare(side(template, P50S), side(template, P50S, scale=1.5))
    assert verdicts(found)["p50"] == WORSE
    assert verdicts(found)["p99"] == WORSE
    assert verdicts(found)["throughput"] == NOISE
    (row,) = found.rows
    p50 = row.metrics[0]
    assert p50.change == pytest.approx(0.5)
    assert p50.p_value == pytest.approx(smallest_p(5, 5))  # every run slower: the exact U
    assert found.exit_status() == 1
    text = render_diff(found)
    assert "verdict: worse (exit 1)" in text
    assert "p50 ms +50.0%" in text


def test_a_faster_candidate_is_better_and_exits_0(template: RunResult) -> None:
    found = compare(side(template, P50S), side(template, P50S, scale=0.7, cpu=1200))
    assert verdicts(found)["p50"] == verdicts(found)["cpu"] == BETTER
    assert found.verdict == BETTER
    assert found.exit_status() == 0


def test_a_detectable_but_tiny_change_is_within_noise(template: RunResult) -> None:
    """0.5 % slower in every run: significant, yet under the threshold."""
    base = side(template, [2.000, 2.001, 2.002, 2.003, 2.004])
    cand = side(template, [2.010, 2.011, 2.012, 2.013, 2.014])
    (row,) = compare(base, cand).rows
    p50 = row.metrics[0]
    assert p50.p_value is not None
    assert p50.p_value < 0.01
    assert p50.verdict == NOISE
    # a threshold of 0.1 % makes the same change a regression
    assert verdicts(compare(base, cand, Method(threshold=0.001)))["p50"] == WORSE


def test_too_few_repeats_are_not_judged_but_shown(template: RunResult) -> None:
    found = compare(side(template, P50S[:4]), side(template, P50S[:4], scale=2))
    assert Method().min_repeats == 5
    assert smallest_p(4, 4) >= 0.01 > smallest_p(5, 5)
    assert Method(alpha=0.05).min_repeats == 4
    (row,) = found.rows
    assert {m.verdict for m in row.metrics} == {TOO_FEW}
    assert row.metrics[0].change == pytest.approx(1.0)
    assert row.metrics[0].p_value is None
    assert found.verdict == "not judged"
    assert found.exit_status() == 0
    assert found.exit_status(strict=True) == 1  # --strict: what cannot be judged fails
    assert "too few repeats" in render_diff(found)
    # one run a side, the common case: the same rule, never a guess
    assert verdicts(compare(side(template, [2.0]), side(template, [9.0])))["p50"] == TOO_FEW


def test_cells_match_by_every_dimension(template: RunResult) -> None:
    at = {rate: side(template, P50S, rate=rate).runs for rate in (200, 400, 800)}
    found = compare(Results(runs=at[200] + at[400]), Results(runs=at[200] + at[800]))
    statuses = {(r.key["load"], r.status) for r in found.rows if r.route == ROUND_TRIP}
    assert statuses == {("200/s", "compared"), ("400/s", ONLY_BASELINE),
                        ("800/s", ONLY_CANDIDATE)}  # fmt: skip
    assert found.exit_status() == 0
    assert found.exit_status(strict=True) == 1  # a cell the candidate lacks
    with pytest.raises(ConfigError, match=r"no cell of cand matches one of base.*load: 200/s "
                       r"against 800/s"):  # fmt: skip
        compare(Results(runs=at[200]), Results(runs=at[800]))


def test_a_round_trip_is_never_compared_with_a_one_way_delivery(template: RunResult) -> None:
    one_way = measured("fire-and-forget")
    assert {r.measures for r in one_way.routes} == {"one-way to worker"}
    with pytest.raises(ConfigError, match="pattern: request-reply against fire-and-forget"):
        compare(Results(runs=[template]), Results(runs=[one_way]))


def test_a_failed_candidate_fails_the_diff_however_fast(template: RunResult) -> None:
    failed = side(template, P50S, scale=0.01, failure="10 error(s); the first: too big")
    found = compare(side(template, P50S), failed)
    (row,) = found.rows
    assert row.status == row.verdict == FAILED
    assert row.metrics == []  # never "better"
    assert "5 of 5 candidate runs failed; 10 error(s)" in (row.failure or "")
    assert found.verdict == WORSE
    assert found.exit_status() == 1
    assert "FAILED" in render_diff(found)


def test_a_failed_baseline_is_never_a_win(template: RunResult) -> None:
    found = compare(side(template, P50S, failure="lost"), side(template, P50S, scale=0.5))
    (row,) = found.rows
    assert row.status == BASELINE_FAILED
    assert row.metrics == []
    assert found.verdict == "not judged"
    assert found.exit_status() == 0


def test_cpu_not_measured_stays_not_measured(template: RunResult) -> None:
    found = compare(side(template, P50S, cpu=None), side(template, P50S))
    (row,) = found.rows
    cpu = row.metrics[3]
    assert (cpu.verdict, cpu.baseline, cpu.candidate) == (NOT_MEASURED, None, None)
    assert found.exit_status() == 0
    assert "n/m" in render_diff(found)


def test_fail_on_chooses_the_gate(template: RunResult) -> None:
    slower = side(template, P50S, scale=1.5)
    found = compare(side(template, P50S), slower, Method.from_flags("cpu,throughput", 5, 0.05))
    assert verdicts(found)["p50"] == WORSE
    assert found.exit_status() == 0  # p50 is not gated
    assert "worse (not gated)" in render_diff(found)
    with pytest.raises(ConfigError, match="--fail-on 'p95'"):
        Method.from_flags("p95", 5, 0.05)


def test_the_terminal_stays_within_100_columns_and_json_says_it_all(
    template: RunResult,
) -> None:
    found = compare(side(template, P50S), side(template, P50S, scale=1.5))
    assert max(len(line) for line in render_diff(found).splitlines()) <= 100
    data = diff_json(found)
    assert data["schema"] == "hopbench.diff/1"
    assert data["exit_status"] == 1
    assert data["method"]["min_repeats"] == 5
    (row,) = data["rows"]
    assert row["measures"] == "round trip"
    assert row["key"]["payload"] == "10B"
    assert row["metrics"]["p50"]["verdict"] == WORSE
    json.dumps(data)  # plain JSON


def test_probes_are_not_repeats(template: RunResult) -> None:
    probes = side(template, P50S).runs
    for probe in probes:
        probe.probe = True
    found = compare(Results(runs=[*side(template, P50S).runs, *probes]), side(template, P50S))
    assert found.skipped_probes == 5
    assert found.rows[0].baseline_runs == 5


# --- the command ----------------------------------------------------------------------


def write(results: Results, folder: Path) -> Path:
    folder.mkdir()
    results.write(folder / "results.json")
    return folder


def test_the_command_exits_1_when_worse_and_writes_json(
    tmp_path: Path, template: RunResult, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(side(template, P50S), tmp_path / "base")
    cand = write(side(template, P50S, scale=1.5), tmp_path / "cand")
    out = tmp_path / "ci" / "diff.json"
    assert main(["diff", str(base), str(cand / "results.json"), "--json", str(out)]) == 1
    assert "verdict: worse (exit 1)" in capsys.readouterr().out
    assert json.loads(out.read_text())["verdict"] == WORSE
    assert main(["diff", str(base), str(cand), "--fail-on", "throughput"]) == 0
    assert main(["diff", str(base), str(cand), "--threshold", "60"]) == 0  # +50 %: noise


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("missing", "CANDIDATE .*missing: no such file; give a results folder"),
        ("empty folder", "CANDIDATE .*has no results.json"),
        ("schema 1", "CANDIDATE .*results of schema 'hopbench.results/1'; this hopbench "
                     f"compares {re.escape(SCHEMA)} only .* Measure it again"),
        ("not json", "CANDIDATE .*not a results file"),
        ("bad threshold", "--threshold -5: a percentage"),
    ],
)  # fmt: skip
def test_bad_input_is_a_sentence_and_exit_2(
    tmp_path: Path, template: RunResult, capsys: pytest.CaptureFixture[str],
    change: str, expected: str,
) -> None:  # fmt: skip
    base = write(side(template, P50S), tmp_path / "base")
    cand = tmp_path / "missing"
    extra: list[str] = []
    if change == "empty folder":
        cand.mkdir()
    elif change == "schema 1":
        cand = write(side(template, P50S), tmp_path / "old") / "results.json"
        cand.write_text(cand.read_text().replace(SCHEMA, "hopbench.results/1"))
    elif change == "not json":
        cand.write_text("{")
    elif change == "bad threshold":
        cand, extra = base, ["--threshold=-5"]
    assert main(["diff", str(base), str(cand), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("hopbench: error: ")
    assert re.search(expected, err), err


def test_read_side_takes_a_folder_or_its_file(tmp_path: Path, template: RunResult) -> None:
    folder = write(side(template, P50S), tmp_path / "r")
    assert read_side(folder, "BASELINE") == read_side(folder / "results.json", "BASELINE")


def test_each_route_of_a_hybrid_is_its_own_row() -> None:
    """HTTP in front (a round trip), Kafka publish-subscribe behind (one-way to worker):
    a slower one-way delivery is worse there, and the round trip stays within noise."""
    sets = ["edges.gateway->worker.mode=kafka", "edges.gateway->worker.pattern=publish-subscribe"]
    topology = load_topology(TOPOLOGIES / "chain.yaml", sets)
    load = LoadSpec(rate=200, duration_s=0.5, warmup_s=0.1, payload_bytes=10)
    hybrid = asyncio.run(run_in_process(topology, load))
    assert {r.measures for r in hybrid.routes} == {"round trip", "one-way to worker"}

    def runs(one_way_scale: float) -> Results:
        out = []
        for i, p50 in enumerate(P50S):
            run = hybrid.model_copy(deep=True)
            run.run_id, run.completion_rate, run.cpu_ms_per_1000 = f"{i}", 200.0, 2400.0
            for route in run.routes:
                slower = route.measures != "round trip"
                route.latency_us.p50 = p50 * 1000 * (one_way_scale if slower else 1)
                route.latency_us.p99 = route.latency_us.p50 * 4
            out.append(run)
        return Results(runs=out)

    found = compare(runs(1.0), runs(2.0))
    by_measure = {row.measures: row.verdict for row in found.rows}
    assert by_measure == {"round trip": NOISE, "one-way to worker": WORSE}
    assert found.exit_status() == 1


def test_a_folder_of_results_folders_pools_their_runs(tmp_path: Path, template: RunResult) -> None:
    """Runs measured interleaved, one folder each, are one side."""
    pooled = tmp_path / "before"
    pooled.mkdir()
    for i, p50 in enumerate(P50S):
        write(side(template, [p50]), pooled / str(i))
    baseline = read_side(pooled, "BASELINE")
    assert len(baseline.runs) == 5
    (row,) = compare(baseline, side(template, P50S, scale=1.5)).rows
    assert (row.baseline_runs, row.verdict) == (5, WORSE)
