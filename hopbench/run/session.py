"""Running one command's worth of runs: one after another, each written out at once."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopbench.config.deployment import Deployment
from hopbench.config.faults import Fault, Pause
from hopbench.config.outdir import why
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.topology import Topology
from hopbench.errors import HopbenchError, OutputError, RunError
from hopbench.results.bottleneck import find_bottleneck
from hopbench.results.csv import write_csv
from hopbench.results.schema import Results, RunResult
from hopbench.results.selfcheck import generator_check
from hopbench.results.status import judge
from hopbench.run.sweep import Knee, Probe, find_max, summarize_cells, verdict


@dataclass
class Options:
    out_dir: Path
    settings: Settings = field(default_factory=lambda: Settings())
    deployment: Deployment = field(default_factory=Deployment)
    grace_s: float = 5.0
    pauses: list[Pause] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    slo_p99_ms: float | None = None
    summarize_repeats: bool = False
    write_report: bool = True  # report.html (charts: 2-4 s of CPU); `hopbench report` later


class Session:
    """Every run of one command: results written after each, failures kept apart.

    ``results.json`` and ``results.csv`` are rewritten after every run, so an
    interrupted command keeps everything it measured (and ``compare --resume``
    can skip it). A folder that stops taking writes (full, read-only, gone) ends the
    command: the summary still shows every run measured, and the error says what the
    folder kept.
    """

    def __init__(self, options: Options, results: Results | None = None) -> None:
        self.options = options
        self.path = options.out_dir / "results.json"
        self.results = results or Results()
        self.failures: list[str] = []
        self.worker_agents: set[str] = set()
        self._live_line = False
        self.saved_runs = len(self.results.runs)  # the runs results.json holds on disk
        self.output_error: OutputError | None = None

    def execute(self, work: Coroutine[Any, Any, None]) -> int:
        """Do the command's runs, then report them; the exit status."""
        try:
            asyncio.run(work)
        except OutputError as exc:
            self.output_error = exc
        return self.report()

    def say(self, message: str) -> None:
        self._end_live_line()
        print(f"  {message}", file=sys.stderr, flush=True)

    def live(self, second: int, message: str) -> None:
        """A run's live rate and p99: one line rewritten on a terminal; in a log, the
        first measured second and every fifth."""
        if sys.stderr.isatty():
            print(f"\r  {message}\033[K", end="", file=sys.stderr, flush=True)
            self._live_line = True
        elif second == 0 or (second >= 0 and (second + 1) % 5 == 0):
            print(f"  {message}", file=sys.stderr, flush=True)

    def _end_live_line(self) -> None:
        if self._live_line:
            print(file=sys.stderr)
            self._live_line = False

    async def run_one(
        self,
        topology: Topology,
        load: LoadSpec,
        cell: str = "",
        variant: str = "",
        probe: bool = False,
    ) -> RunResult | None:
        """One run, kept and written out; None when it could not run at all."""
        from hopbench.run.orchestrator import RunRequest, run_topology

        patterns = "+".join(dict.fromkeys(e.pattern for e in topology.edges))
        what = f"{topology.name} over {topology.mode_label} ({patterns})"
        print(f"== {what} at {load.label}", file=sys.stderr, flush=True)
        request = RunRequest(
            topology=topology,
            load=load,
            out_dir=self.options.out_dir,
            settings=self.options.settings,
            deployment=self.options.deployment,
            grace_s=self.options.grace_s,
            pauses=self.options.pauses,
            faults=self.options.faults,
            progress=self.say,
            live=self.live,
            worker_agents=self.worker_agents,
        )
        try:
            run = await run_topology(request)
            self._end_live_line()
        except OutputError:
            raise  # no later run could be kept either
        except OSError as exc:
            if not _under(exc.filename, self.options.out_dir):
                raise
            raise OutputError(f"cannot write {exc.filename}: {why(exc)}") from exc
        except HopbenchError as exc:  # one run failing keeps the others' numbers
            self.failures.append(f"{what}: {exc}")
            self.say(f"failed: {exc}")
            return None
        run.cell, run.probe = cell, probe
        run.variant = variant or run.variant
        run.notes += topology.notes
        judge(run, self.options.slo_p99_ms)
        self.diagnose(run)
        self.results.runs.append(run)
        if self.options.summarize_repeats:
            self.results.cells = summarize_cells(self.results.runs)
        self.write()
        for note in run.notes:
            self.say(f"note: {note}")
        if run.failed:
            self.say(f"{'probe ' if probe else ''}FAILED: {run.failure}")
        return run

    def diagnose(self, run: RunResult) -> None:
        """A run that did not keep up names its bottleneck, in the results and here.
        A closed loop has no rate to keep up with: it slows down with the system."""
        if run.load.get("concurrency") is not None:
            return
        run.generator_limit = generator_check(run)
        if run.generator_limit is not None:
            run.notes.append(f"why the sends fell behind: {run.generator_limit.detail}")
        slo = self.options.slo_p99_ms
        reason = verdict(run, slo * 1000 if slo is not None else None)
        if reason is None:
            return
        run.bottleneck = find_bottleneck(run, reason)
        if run.bottleneck is not None:
            self.say(f"bottleneck: {run.bottleneck.text} ({reason})")

    async def release(self) -> None:
        """Let the load worker agents go: their Job completes when they exit."""
        from hopbench.control.child import shutdown_agent

        token = self.options.deployment.placement.token
        await asyncio.gather(*(shutdown_agent(a, token) for a in sorted(self.worker_agents)))
        self.worker_agents.clear()

    def write(self) -> None:
        self.results.write(self.path)
        write_csv(self.results.runs, self.options.out_dir / "results.csv")
        self.saved_runs = len(self.results.runs)

    async def search(
        self, topology: Topology, load: LoadSpec, cell: str = "", variant: str = ""
    ) -> None:
        async def run_at(rate: float) -> RunResult:
            at = load.model_copy(update={"rate": rate})
            run = await self.run_one(topology, at, cell, variant, probe=True)
            if run is None:
                raise RunError(f"{topology.name} over {topology.mode_label}: a probe failed")
            return run

        def on_probe(run: RunResult, probe: Probe) -> None:
            self.say(f"probe {probe.rate:g}/s: {'kept up' if probe.passed else probe.reason}")

        try:
            best, probes = await find_max(
                run_at,
                start_rate=load.rate,
                slo_p99_ms=self.options.slo_p99_ms,
                on_probe=on_probe,
            )
        except RunError as exc:
            self.failures.append(str(exc))
            return
        knee = Knee(
            topology.name, topology.mode_label, self.options.slo_p99_ms, best, probes, variant
        )
        self.results.max_sustainable.append({**knee.to_json(), "cell": cell})
        self.write()

    def report(self, title: str = "") -> int:
        """The summary on the terminal, and report.html next to the results. The exit
        status: 1 when a run failed (measured as failed, or could not run at all; a
        --find-max probe past the knee is evidence, not a failure) or the results folder
        stopped taking writes, else 0."""
        from hopbench.results.terminal import terminal_summary

        if self.results.runs:
            paths = self._write_report(title)
            print()
            print(terminal_summary(self.results, paths))
        if self.output_error is not None:
            print(f"hopbench: error: {self.output_error}", file=sys.stderr)
            print(f"hopbench: {self.kept()}", file=sys.stderr)
        for failure in self.failures:
            print(f"hopbench: error: {failure}", file=sys.stderr)
        failed = [r for r in self.results.runs if r.failed and not r.probe]
        for run in failed:
            what = f"{run.topology} {run.cell or run.variant or run.mode} at {run.load_label}"
            print(f"hopbench: run {run.run_id} failed ({what}): {run.failure}", file=sys.stderr)
        return 1 if self.failures or failed or self.output_error is not None else 0

    def _write_report(self, title: str) -> list[str]:
        """report.html next to the results, unless the folder stopped taking writes;
        the paths the summary names."""
        from hopbench.results.report import write_report

        if self.output_error is not None:
            return []
        if not self.options.write_report:
            return [f"results: {self.path}"]
        report_path = self.options.out_dir / "report.html"
        try:
            write_report(self.results, report_path, title)
        except OutputError as exc:
            self.output_error = exc
            return [f"results: {self.path}"]
        return [f"results: {self.path}", f"report:  {report_path}"]

    def kept(self) -> str:
        """What the results folder holds after a write failed, and how to go on."""
        out, saved = self.options.out_dir, self.saved_runs
        measured = len(self.results.runs)
        if saved == 0:
            held = f"{out} holds no results (the runs' logs, if any, are in {out / 'runs'})"
        else:
            held = f"{self.path} and results.csv hold the {saved} run(s) written before it"
        unsaved = (
            f"; {measured - saved} measured run(s) could not be written (the summary above "
            "shows them)"
            if measured > saved
            else ""
        )
        again = f" (then `hopbench report {out}` writes the report from them)" if saved else ""
        return (
            f"{held}{unsaved}; report.html not written. Free space in {out}{again}, "
            "or pass another --out"
        )


def _under(filename: object, folder: Path) -> bool:
    """Whether an OSError's file is in the results folder (a write there failed)."""
    if not isinstance(filename, str | Path):
        return False
    return os.path.abspath(folder) in {os.path.abspath(p) for p in Path(filename).parents}
