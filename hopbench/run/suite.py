"""Running a comparison suite: every cell not done yet, in turn, with progress and ETA.

The suite file itself (its matrix and cells) is read by hopbench.config.suite.
"""

from __future__ import annotations

import time
from pathlib import Path

from hopbench.config.deployment import Deployment
from hopbench.config.suite import Cell, SuiteSpec, load_suite
from hopbench.errors import ConfigError
from hopbench.results.schema import Results
from hopbench.run.session import Options, Session


def done_cells(results: Results) -> set[str]:
    """Cells an earlier command finished: a run for a rate, a verdict for a search
    (a search cut short is run again; its probes stay in the results)."""
    searched = {str(k["cell"]) for k in results.max_sustainable if k.get("cell")}
    ran = {r.cell for r in results.runs if r.cell and not r.probe}
    return ran | searched


def prepare(
    path: Path, out_dir: Path, resume: bool, deployment: Deployment
) -> tuple[SuiteSpec, list[Cell], Session]:
    """Read the suite, and the earlier results when resuming; run nothing yet."""
    suite, cells, settings = load_suite(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    if results_path.exists() and not resume:
        raise ConfigError(
            f"{results_path} exists: pass --resume to finish that suite, or another --out"
        )
    results = Results.read(results_path) if resume and results_path.exists() else Results()
    results.suite = {"name": suite.name, "description": suite.description}
    session = Session(
        Options(
            out_dir=out_dir,
            settings=settings,
            deployment=deployment,
            grace_s=suite.load.grace_s,
            slo_p99_ms=suite.slo_p99_ms,
            summarize_repeats=suite.matrix.repeats > 1,
        ),
        results,
    )
    return suite, cells, session


async def compare(suite: SuiteSpec, cells: list[Cell], session: Session) -> None:
    """Run every cell not done yet, saying where it is and how long is left."""
    finished = done_cells(session.results)
    todo = [c for c in cells if c.id not in finished]
    started = time.monotonic()
    session.say(f"suite {suite.name}: {len(cells)} cells, {len(cells) - len(todo)} already done")
    try:
        for k, cell in enumerate(todo, start=1):
            elapsed = time.monotonic() - started
            eta = elapsed / (k - 1) * (len(todo) - k + 1) if k > 1 else None
            print(
                f"[{k}/{len(todo)}] {cell.id}  elapsed {_clock(elapsed)}"
                + (f", about {_clock(eta)} to go" if eta is not None else ""),
                flush=True,
            )
            if cell.find_max:
                await session.search(cell.topology, cell.load, cell.id, cell.variant)
                continue
            run = await session.run_one(cell.topology, cell.load, cell.id, cell.variant)
            if run is not None:
                verdict = f", FAILED: {run.failure}" if run.failed else ""
                slo = ", over the SLO" if run.slo_met is False and not run.failed else ""
                print(
                    f"      {run.achieved_rate:.0f}/s sent, {run.completion_rate:.0f}/s done, "
                    f"p99 {run.latency_us.p99 / 1000:.2f} ms, lost {run.lost}{slo}{verdict}",
                    flush=True,
                )
    finally:
        await session.release()


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"
