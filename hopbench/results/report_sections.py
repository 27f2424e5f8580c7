"""The report's sections in words and tables: the verdict that opens it, the searches
with their probes as evidence, where the time goes per route and hop, every run's
counts, and every run's configuration as readable text."""

from __future__ import annotations

import html
from collections import defaultdict

from hopbench.config.settings import Settings
from hopbench.results.cells import dimensions, variant_label
from hopbench.results.charts import breakdown_chart
from hopbench.results.numbers import ms, number
from hopbench.results.schema import (
    Percentiles,
    ProcessResult,
    Results,
    RouteResult,
    RunResult,
    short_of,
)
from hopbench.results.selfcheck import flag
from hopbench.results.summary import FIND_MAX, METRICS, SummaryRow
from hopbench.results.terminal import group_title
from hopbench.results.wire import wire_text

UNITS = {"p50 ms": "ms", "p99 ms": "ms", "done/s": "messages/s", "CPU ms/1000": "ms CPU per 1,000"}
WHAT = {"p50 ms": "p50", "p99 ms": "p99", "done/s": "throughput", "CPU ms/1000": "CPU"}


def table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="{classes[i][j] if classes else ""}">{html.escape(c)}</td>'
            for j, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _li(items: list[str], css: str = "") -> str:
    return f"<ul class='{css}'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


# --- the verdict --------------------------------------------------------------------


def verdict_section(rows: list[SummaryRow], results: Results) -> str:
    """Who wins what in each group of comparable rows, the knees, every bottleneck,
    and every failure: the answer first, the evidence below it."""
    groups: dict[tuple[str, ...], list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.load != FIND_MAX:
            groups[row.group].append(row)
    items = [_group_verdict(group) for group in groups.values()]
    knees = [r for r in rows if r.load == FIND_MAX]
    if knees:
        items.append(_knee_verdict(knees))
    parts = ["<h2 id='verdict'>Verdict</h2>", _li(items, "verdict")]
    stuck = [r for r in results.runs if r.bottleneck is not None]
    if stuck:
        parts.append("<p>Runs that did not keep up, and why:</p>")
        parts.append(_li([_bottleneck(r) for r in stuck], "bottleneck"))
    failed = [r for r in results.runs if r.failed]
    if failed:
        parts.append("<p class='failed'>Failed (never ranked, never drawn):</p>")
        parts.append(_li([_failure(r) for r in failed], "failed"))
    return "\n".join(parts)


def _group_verdict(group: list[SummaryRow]) -> str:
    title = f"<b>{html.escape(group_title(group[0]))}</b>: "
    ranked = [r for r in group if r.failure is None and r.ranks]
    over = [short_name(r) for r in ranked if any(
        run.slo_met is False or run.bottleneck is not None for run in r.runs)]  # fmt: skip
    caveat = f" Did not keep up or over the SLO: {html.escape(', '.join(over))}." if over else ""
    failed = [short_name(r) for r in group if r.failure is not None]
    caveat += f" Failed, so not ranked: {html.escape(', '.join(failed))}." if failed else ""
    if not ranked:
        return title + "no variant finished without failing." + caveat
    if len(ranked) == 1:
        row = ranked[0]
        said = ", ".join(_value(row, m) for m in METRICS if row.median(m) is not None)
        return title + f"only <b>{html.escape(short_name(row))}</b> ranked: {said}.{caveat}"
    wins: dict[str, list[str]] = defaultdict(list)
    for metric in METRICS:
        if metric == "done/s" and not _throughput_differs(ranked):
            continue
        winner = next((r for r in ranked if r.ranks.get(metric) == 1), None)
        if winner is not None:
            wins[short_name(winner)].append(_margin(winner, metric, ranked))
    said = "; ".join(f"<b>{html.escape(v)}</b> wins on {', '.join(w)}" for v, w in wins.items())
    return title + said + "." + caveat


def _throughput_differs(ranked: list[SummaryRow]) -> bool:
    """At an offered rate every variant kept up with, more completions in the window
    is catching up on a backlog, not a win: throughput decides only when one fell short
    (or the load is a closed loop, whose rate is the system's own)."""
    for row in ranked:
        run = row.runs[0]
        done = row.median("done/s")
        if run.load.get("concurrency") is not None or (
            done is not None and short_of(done, run.target_rate, run.duration_s)
        ):
            return True
    return False


def short_name(row: SummaryRow) -> str:
    """The variant without its broker's label (the summary table has it in full)."""
    return (row.runs[0].variant or row.runs[0].mode) if row.runs else row.variant


def _value(row: SummaryRow, metric: str) -> str:
    median = row.median(metric)
    return f"{WHAT[metric]} {number(median or 0.0)} {UNITS[metric]}"


def _margin(winner: SummaryRow, metric: str, ranked: list[SummaryRow]) -> str:
    """'p99 (16.3 ms; grpc 55.4)': the winner's value and the runner-up's."""
    second = next((r for r in ranked if r.ranks.get(metric) == 2), None)
    best = f"{number(winner.median(metric) or 0.0)} {UNITS[metric]}"
    if second is None:
        return f"{WHAT[metric]} ({best})"
    other = number(second.median(metric) or 0.0)
    return f"{WHAT[metric]} ({best}; {html.escape(short_name(second))} {other})"


def _knee_verdict(knees: list[SummaryRow]) -> str:
    said = "; ".join(
        f"{html.escape(r.variant)} ({html.escape(r.measures)}): "
        + (f"{r.max_sustainable:g}/s" if r.max_sustainable else "none found")
        + (" — the highest" if r.ranks.get("max sustainable") == 1 and len(knees) > 1 else "")
        for r in knees
    )
    return f"<b>max sustainable rate</b> (the knee each search found): {said}."


def _bottleneck(run: RunResult) -> str:
    assert run.bottleneck is not None
    what = ("probe " if run.probe else "") + f"{variant_label(run)} @ {run.load_label}"
    return f"{html.escape(what)}: <b>{html.escape(run.bottleneck.text)}</b>"


def _failure(run: RunResult) -> str:
    what = ("probe " if run.probe else "") + f"{variant_label(run)} @ {run.load_label}"
    return f"{html.escape(what)} (run {run.run_id}): {html.escape(run.failure or '')}"


# --- searches, runs -----------------------------------------------------------------


def knees_section(results: Results) -> str:
    """Each --find-max search: its knee, and every probe as the evidence for it."""
    if not results.max_sustainable:
        return ""
    by_id = {r.run_id: r for r in results.runs}
    parts = ["<h2>Knee searches</h2><p>Each probe is one run at one rate, kept as "
             "evidence of the knee: not a variant, never ranked.</p>"]  # fmt: skip
    header = ["rate", "verdict", "done/s", "p99 ms", "bottleneck or failure"]
    for knee in results.max_sustainable:
        best = knee.get("max_sustainable_rate")
        name = str(knee.get("cell") or knee.get("variant") or knee.get("mode"))
        rows = []
        for probe in knee.get("evidence", []):
            run = by_id.get(probe["run_id"])
            why = run.failure or (run.bottleneck.text if run.bottleneck else "") if run else ""
            rows.append([f"{probe['rate']:g}/s", "kept up" if probe["passed"] else "did not",
                         number(run.completion_rate) if run else "-",
                         ms(run.latency_us.p99) if run else "-",
                         why or str(probe.get("reason", ""))])  # fmt: skip
        knee_said = f"{best:g}/s" if best else "none found"
        parts += [f"<h3>{html.escape(name)}: knee {knee_said}</h3>", table(header, rows)]
    return "\n".join(parts)


def runs_table(runs: list[RunResult]) -> str:
    header = ["cell", "status", "run", "sent", "done", "lost", "dup", "err", "p50 ms",
              "p99 ms", "max ms", "generator limited"]  # fmt: skip
    rows = [[r.cell or variant_label(r), ("probe " if r.probe else "") + r.status, r.run_id,
             f"{r.sent:,}", f"{r.completed:,}", f"{r.lost:,}", f"{r.duplicated:,}",
             f"{r.errors:,}", ms(r.latency_us.p50), ms(r.latency_us.p99), ms(r.latency_us.max),
             {"!": "yes", "~": "no, host busy"}.get(flag(r), "")] for r in runs]  # fmt: skip
    classes = [
        [("failed" if r.failed and j == 1 else "") for j in range(len(header))] for r in runs
    ]
    return table(header, rows, classes)


# --- where the time goes ------------------------------------------------------------


def breakdown_section(runs: list[RunResult]) -> str:
    """Per route: the stacked breakdown of the mean per variant and load, and a table
    of each hop's parts (mean share, p50 and p99). Failed runs and probes are not drawn."""
    by_route: dict[str, list[tuple[str, RouteResult]]] = defaultdict(list)
    for run in runs:
        if run.failed or run.probe:
            continue
        for route in run.routes:
            if route.breakdown is not None:
                by_route[route.route].append((f"{variant_label(run)} @ {run.load_label}", route))
    if not by_route:
        return ""
    parts = [
        "<h2>Where the time goes</h2>",
        "<p>Each bar is a route's mean latency split along its critical path: the load "
        "generator's send lag, then per hop <em>transit</em> (from the previous send until "
        "its transport had the message), <em>wait</em> (for a free handler), "
        "<em>work</em>, and <em>rest</em> (its own time after its work: gathering, "
        "publishing, the reply's trip back). The parts of every message add up exactly; "
        "the residual is the histogram's rounding. Percentiles do not add: p50 and p99 "
        "are each part's own.</p>",
    ]
    header = ["variant", "mean ms", "hop", "transit", "wait", "work", "rest", "on path"]
    for name, routes in by_route.items():
        bars = [(label, route.breakdown) for label, route in routes if route.breakdown]
        rows = [row for label, route in routes for row in _breakdown_rows(label, route)]
        parts += [
            f"<h3>{html.escape(name)}</h3>",
            f"<div class='chart'>{breakdown_chart(name, bars)}</div>",
            "<p>ms: mean share (p50 / p99 of the part)</p>",
            table(header, rows),
        ]
    return "\n".join(parts)


def _breakdown_rows(label: str, route: RouteResult) -> list[list[str]]:
    breakdown = route.breakdown
    if breakdown is None:
        return []
    blank = ["", "", "", ""]
    rows = [[label, ms(breakdown.latency_mean_us), "send lag", ms(breakdown.send_lag_us),
             *blank]]  # fmt: skip
    hops = {h.service: h for h in route.hops}
    for share in breakdown.hops:
        hop = hops[share.service]
        rows.append(["", "", share.service,
                     _part(share.transit_us, hop.transit_us), _part(share.wait_us, hop.wait_us),
                     _part(share.work_us, hop.work_us), _part(share.rest_us, hop.rest_us),
                     f"{share.on_path:.0%}"])  # fmt: skip
    rows.append(["", "", "residual", ms(breakdown.residual_us, signed=True), *blank])
    return rows


def _part(share_us: float, part: Percentiles) -> str:
    if not part.count:
        return "-"
    return f"{ms(share_us)} ({ms(part.p50)} / {ms(part.p99)})"


# --- configuration ------------------------------------------------------------------


def config_section(run: RunResult) -> str:
    """One run's configuration as sentences and short lists, not a dump."""
    facts = {
        "topology": f"{run.topology} ({run.source})",
        "edges": _li([html.escape(_edge(run, i)) for i in range(len(run.edges))]),
        "replicas": html.escape(", ".join(f"{s} ×{n}" for s, n in run.replicas.items()) or "-"),
        "load": html.escape(_load(run)),
        "settings": html.escape(_settings(run)),
        "brokers": _li([html.escape(b) for b in _brokers(run)]) if run.brokers else "none",
        "processes": _li([html.escape(_process(p)) for p in run.processes]),
        "machine": html.escape(_machine(run)),
        "versions": html.escape(_versions(run)),
        "started": html.escape(run.started_at),
        "status": html.escape(run.status + (f": {run.failure}" if run.failure else "")),
        "notes": _li([html.escape(n) for n in run.notes]) if run.notes else "-",
    }
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts.items())
    title = f"{run.cell or variant_label(run)} — run {run.run_id}"
    css = " class='failed'" if run.failed else ""
    return (
        f"<details><summary{css}>{html.escape(title)}</summary>"
        f"<table class='config'>{body}</table></details>"
    )


def _edge(run: RunResult, index: int) -> str:
    edge = run.edges[index]
    settings = ", ".join(f"{k} = {v}" for k, v in edge.settings.items())
    wire = f"; per message {wire_text(edge)}" if edge.wire is not None else ""
    text = f"{edge.name}: {edge.mode}, {edge.pattern}"
    text += f", {edge.client} client" if edge.client else ""
    return text + (f" ({settings})" if settings else "") + wire


def _load(run: RunResult) -> str:
    dims = dimensions(run)
    arrival = run.load.get("arrival", "constant")
    return (f"{dims['load']} ({arrival} arrivals), {run.duration_s:g} s measured after "
            f"{run.warmup_s:g} s of warm-up, payload {run.payload_bytes:,} B, "
            f"{run.workers} load worker(s), {dims['in-flight']}")  # fmt: skip


def _settings(run: RunResult) -> str:
    defaults = Settings().model_dump(mode="json")
    changed = [f"{k} = {v}" for k, v in sorted(run.settings.items()) if defaults.get(k) != v]
    return "the defaults, except " + ", ".join(changed) if changed else "the defaults"


def _brokers(run: RunResult) -> list[str]:
    found = []
    for mode, broker in run.brokers.items():
        info = broker if isinstance(broker, dict) else {"where": str(broker)}
        where = info.get("where") or "not named"
        others = ", ".join(
            f"{k} {v}" for k, v in info.items() if k != "where" and v not in ("", None)
        )
        found.append(f"{mode}: {where}" + (f" ({others})" if others else ""))
    return found


def _machine(run: RunResult) -> str:
    env = {k: v for k, v in run.environment.items() if k != "packages"}
    return ", ".join(f"{k} {v}" for k, v in env.items()) or "-"


def _versions(run: RunResult) -> str:
    packages = run.environment.get("packages", {})
    return ", ".join(f"{k} {v}" for k, v in packages.items()) if packages else "-"


def _process(p: ProcessResult) -> str:
    where = "" if p.host == "local" else f" at {p.host}"
    if p.machine:
        where += f" ({p.machine.get('hostname')}, {p.machine.get('cpus')} CPUs)"
    if p.clock and not p.clock.get("same_host"):
        offset, error = p.clock["applied_offset_us"], p.clock["uncertainty_us"]
        where += f", clock offset {number(offset, True)} ± {number(error)} µs"
    cpu = "CPU not measured" if p.cpu_s is None else f"{number(p.cpu_s)} CPU-s in the window"
    died = f", died: {p.died}" if p.died else ""
    error = f", {p.errors} error(s), the first: {p.first_error}" if p.first_error else ""
    return f"{p.name}{where}: {cpu}, {number(p.peak_rss_mb)} MB{error}{died}"
