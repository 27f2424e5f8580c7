"""Running one command's worth of runs: one after another, each written out at once."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hopbench.config.deployment import Deployment
from hopbench.config.faults import Fault, Pause
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.topology import Topology
from hopbench.errors import HopbenchError, RunError
from hopbench.results.bottleneck import find_bottleneck
from hopbench.results.csv import write_csv
from hopbench.results.schema import Results, RunResult
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


class Session:
    """Every run of one command: results written after each, failures kept apart.

    ``results.json`` and ``results.csv`` are rewritten after every run, so an
    interrupted command keeps everything it measured (and ``compare --resume``
    can skip it).
    """

    def __init__(self, options: Options, results: Results | None = None) -> None:
        self.options = options
        self.path = options.out_dir / "results.json"
        self.results = results or Results()
        self.failures: list[str] = []
        self.worker_agents: set[str] = set()
        self._live_line = False

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
        --find-max probe past the knee is evidence, not a failure), else 0."""
        from hopbench.results.report import write_report
        from hopbench.results.terminal import terminal_summary

        if self.results.runs:
            report_path = self.options.out_dir / "report.html"
            write_report(self.results, report_path, title)
            paths = [f"results: {self.path}", f"report:  {report_path}"]
            print()
            print(terminal_summary(self.results, paths))
        for failure in self.failures:
            print(f"hopbench: error: {failure}", file=sys.stderr)
        failed = [r for r in self.results.runs if r.failed and not r.probe]
        for run in failed:
            what = f"{run.topology} {run.cell or run.variant or run.mode} at {run.load_label}"
            print(f"hopbench: run {run.run_id} failed ({what}): {run.failure}", file=sys.stderr)
        return 1 if self.failures or failed else 0
