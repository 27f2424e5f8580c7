"""Comparison suites: cells from the matrix, errors with file and line, results after
every cell, and --resume finishing an interrupted suite without rerunning a cell."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hopbench.config.suite import load_suite
from hopbench.errors import ConfigError
from tests.conftest import ROOT, reap

SUITE = """\
name: tiny
topology: {topology}
load: {duration_s: 1, warmup_s: 0.5}
matrix:
  modes: [http, grpc]
  assignments:
    front-grpc: ["edges.loadgen->gateway.mode=grpc"]
  rates: [100]
"""


def write_suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(text.replace("{topology}", str(ROOT / "topologies" / "chain.yaml")))
    return path


def test_cells_come_from_the_matrix(tmp_path: Path) -> None:
    text = SUITE.replace("rates: [100]", "rates: [100, 200]\n  payloads: [10, 1000]\n"
                         "  replicas: {worker: [1, 2]}\n  repeats: 2")  # fmt: skip
    _, cells, _ = load_suite(write_suite(tmp_path, text))
    assert len(cells) == 3 * 2 * 2 * 2 * 2  # variants x rates x payloads x replicas x repeats
    assert len({c.id for c in cells}) == len(cells)
    assert "http 10B workerx2 200/s #2" in {c.id for c in cells}
    grpc = next(c for c in cells if c.id.startswith("grpc"))
    assert {e.mode for e in grpc.topology.edges} == {"grpc"}
    front = next(c for c in cells if c.id.startswith("front-grpc"))
    assert [e.mode for e in front.topology.edges] == ["grpc", "http"]


def test_patterns_cross_the_modes_and_assignments_run_as_written(tmp_path: Path) -> None:
    text = SUITE.replace("modes: [http, grpc]", "modes: [http, kafka]\n"
                         "  patterns: [request-reply, fire-and-forget]")  # fmt: skip
    _, cells, _ = load_suite(write_suite(tmp_path, text))
    assert [c.id for c in cells] == [
        "http request-reply 100B 100/s", "http fire-and-forget 100B 100/s",
        "kafka request-reply 100B 100/s", "kafka fire-and-forget 100B 100/s",
        "front-grpc 100B 100/s",
    ]  # fmt: skip
    assert [c.variant for c in cells] == ["http", "http", "kafka", "kafka", "front-grpc"]
    for cell in cells[:4]:
        assert {e.pattern for e in cell.topology.edges} == {cell.id.split()[1]}
    # the assignment keeps the chain's request-reply on both edges
    assert {e.pattern for e in cells[4].topology.edges} == {"request-reply"}
    alone = SUITE.replace("modes: [http, grpc]", "patterns: [fire-and-forget]")
    with pytest.raises(ConfigError, match="patterns cross the modes: give modes too"):
        load_suite(write_suite(tmp_path, alone))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("modes: [http, grpc]", "line 5: matrix.modes[1]: 'grcp' is not one of"),
        ("rates: [100]", "line 4: matrix: give either rates (a list) or find_max: true"),
        ("gateway.mode=grpc", "cell front-grpc:"),
    ],
)
def test_suite_mistakes_name_the_file_and_line(tmp_path: Path, change: str, expected: str) -> None:
    broken = {"modes: [http, grpc]": "modes: [http, grcp]", "rates: [100]": "find_max: false",
              "gateway.mode=grpc": "gateway.mode=grcp"}[change]  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_suite(write_suite(tmp_path, SUITE.replace(change, broken)))
    assert expected in str(info.value)


@pytest.mark.integration
def test_an_interrupted_suite_resumes_without_rerunning_finished_cells(tmp_path: Path) -> None:
    suite, out = write_suite(tmp_path), tmp_path / "out"
    argv = [sys.executable, "-m", "hopbench", "compare", str(suite), "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("[2/3]"):  # the first cell is written; stop during the second
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        reap(proc)
    first = json.loads((out / "results.json").read_text())["runs"]
    assert [r["cell"] for r in first] == ["http 100B 100/s"]

    again = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "3 cells, 1 already done" in again.stderr
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["cell"] for r in runs] == ["http 100B 100/s", "grpc 100B 100/s",
                                         "front-grpc 100B 100/s"]  # fmt: skip
    assert runs[0]["run_id"] == first[0]["run_id"]  # kept, not rerun
    with (out / "results.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert [r["cell"] for r in rows] == [r["cell"] for r in runs]
    assert all(int(r["lost"]) == 0 and float(r["cpu_ms_per_1000"]) > 0 for r in rows)

    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "exists: pass --resume" in refused.stderr
