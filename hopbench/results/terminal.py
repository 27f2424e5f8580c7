"""The one summary the terminal prints after a command, within 100 columns.

Each row appears once: per group of comparable rows (the same route, kind, load and
every other dimension; hopbench.results.cells) a block ranking its variants; then the
searches' knees with their probes as evidence, the failed rows with their causes, the
bottleneck of every run that did not keep up, where the time goes hop by hop, the
counts, and the paths of the files written. The per-run numbers are in results.json,
results.csv and the report.
"""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence

from hopbench.results.cachetable import render_caches
from hopbench.results.cells import variant_label
from hopbench.results.dbtable import render_db
from hopbench.results.numbers import number
from hopbench.results.schema import Results, RunResult
from hopbench.results.selfcheck import flag
from hopbench.results.summary import FIND_MAX, METRICS, SummaryRow, metric_cell, summary
from hopbench.results.table import render_breakdown
from hopbench.results.wire import render_wire

WIDTH = 100
GAP = "  "
LABEL_MIN = 16  # the variant column never narrower: its label wraps instead
LABEL_MAX = 40  # nor wider: a longer label wraps, and the numbers stay near their names


def terminal_summary(results: Results, paths: Sequence[str] = ()) -> str:
    """Everything the terminal shows about a command's runs, each row once."""
    rows = summary(results)
    parts = [_ranked(rows), _knees(rows, results), _failed(rows, results)]
    parts += [_bottlenecks(results.runs), _breakdown(results.runs), render_wire(results.runs)]
    measured = [r for r in results.runs if not r.probe]
    parts += [render_caches(measured), render_db(measured), _counts(results.runs)]
    if paths:
        parts.append("\n".join(paths))
    return "\n\n".join(p for p in parts if p)


def _ranked(rows: list[SummaryRow]) -> str:
    groups: dict[tuple[str, ...], list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.load != FIND_MAX:
            groups[row.group].append(row)
    if not groups:
        return ""
    repeats = any(len(r.runs) > 1 for r in rows)
    lines = [
        "summary: " + ("median [min-max] over repeats; " if repeats else "")
        + "#rank among the rows of one block (the same route, kind, load and every other "
        "dimension); n/m: not measured; failed rows are never ranked"
    ]  # fmt: skip
    lines = _wrap(lines[0])
    for group in groups.values():
        lines += ["", group_title(group[0]), *_block(group, repeats)]
    return "\n".join(lines)


def group_title(row: SummaryRow) -> str:
    """What a block compares: '<kind>, route <route>, <load>[, the other dimensions]'
    (the pattern is the variant's: its rows say it when they differ)."""
    others = [v for k, v in row.shown.items() if k != "pattern"]
    return ", ".join([row.measures, f"route {row.route}", row.load, *others])[:WIDTH]


def _block(group: list[SummaryRow], repeats: bool) -> list[str]:
    """One table: the variant (wrapped to fit), runs when repeated, the metrics."""
    patterns = Counter(r.shown.get("pattern") for r in group)
    usual = patterns.most_common(1)[0][0]
    header = ["variant", *(["runs"] if repeats else []), *METRICS]
    cells = []
    for row in group:
        pattern = row.shown.get("pattern")  # said when it is not the block's usual one
        label = row.variant + (f", {pattern}" if pattern != usual else "")
        metrics = [_metric_lines(row, m) for m in METRICS]
        cells.append([[label], *([[str(len(row.runs))]] if repeats else []), *metrics])
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(1, len(header))]
    widths = [max(w, len(h)) for w, h in zip(widths, header[1:], strict=True)]
    room = WIDTH - 2 - sum(w + len(GAP) for w in widths)
    longest = max(len(row[0][0]) for row in cells)
    label_width = max(min(longest, room, LABEL_MAX), LABEL_MIN, len(header[0]))
    for cell in cells:
        cell[0] = textwrap.wrap(cell[0][0], label_width, break_on_hyphens=False) or [""]
    return _grid([label_width, *widths], header, cells)


def _metric_lines(row: SummaryRow, metric: str) -> list[str]:
    """The median with its marks and rank; the spread over repeats on a second line."""
    if row.failure is not None:
        return ["failed"]
    text = metric_cell(row, metric)
    if " [" not in text:
        return [text]
    head, _, rest = text.partition(" [")
    spread, _, marks = rest.partition("]")
    return [head + marks, f"[{spread}]"]


def _grid(widths: list[int], header: list[str], rows: list[list[list[str]]]) -> list[str]:
    """Rows of multi-line cells; the first column left-aligned, the others right."""

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                  enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return ("  " + GAP.join(padded)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    for row in rows:
        height = max(len(cell) for cell in row)
        for k in range(height):
            out.append(line([cell[k] if k < len(cell) else "" for cell in row]))
    return out


def _knees(rows: list[SummaryRow], results: Results) -> str:
    """Each search's knee, and its probes as the evidence for it."""
    knees = [r for r in rows if r.load == FIND_MAX]
    if not knees:
        return ""
    by_id = {r.run_id: r for r in results.runs}
    lines = ["max sustainable rate (--find-max; the probes are evidence, not variants)"]
    for knee in knees:
        rate = "none found" if knee.max_sustainable is None else f"{knee.max_sustainable:g}/s"
        rank = knee.ranks.get("max sustainable")
        probes = [by_id[run_id] for run_id in knee.evidence]
        said = "; ".join(_probe(p) for p in probes)
        text = f"{knee.variant}, {knee.measures}: {rate}" + (f" #{rank}" if rank else "")
        lines += _wrap(f"{text}; probes: {said}" if said else text, "  ")
    return "\n".join(lines)


def _probe(run: RunResult) -> str:
    if run.failed:
        return f"{run.target_rate:g}/s failed"
    return f"{run.target_rate:g}/s p99 {number(run.latency_us.p99 / 1000)} ms" + (
        " over" if run.slo_met is False or run.bottleneck is not None else ""
    )


def _failed(rows: list[SummaryRow], results: Results) -> str:
    failed = [r for r in rows if r.failure is not None and r.load != FIND_MAX]
    probes = [r for r in results.runs if r.probe and r.failed]
    if not failed and not probes:
        return ""
    lines = ["failed (never ranked; everything they measured is in results.json):"]
    for row in failed:
        lines += _wrap(f"{row.variant}, {row.measures} @ {row.load}: {row.failure}", "  ")
    for run in probes:
        lines += _wrap(f"probe {variant_label(run)} @ {run.load_label}: {run.failure}", "  ")
    return "\n".join(lines)


def _bottlenecks(runs: list[RunResult]) -> str:
    found = [r for r in runs if r.bottleneck is not None]
    if not found:
        return ""
    lines = ["bottlenecks (runs that did not keep up):"]
    for run in found:
        assert run.bottleneck is not None
        probe = "probe " if run.probe else ""
        lines += _wrap(f"{probe}{variant_label(run)} @ {run.load_label}: {run.bottleneck.text}",
                       "  ")  # fmt: skip
    return "\n".join(lines)


def _breakdown(runs: list[RunResult]) -> str:
    """Where the time goes, for the runs the summary ranks (not probes nor failures)."""
    return render_breakdown([r for r in runs if not r.probe and not r.failed])


def _counts(runs: list[RunResult]) -> str:
    measured = [r for r in runs if not r.probe]
    if not measured:
        return ""
    total = {k: sum(getattr(r, k) for r in measured)
             for k in ("sent", "completed", "lost", "duplicated", "errors")}  # fmt: skip
    text = f"{len(measured)} run(s): " + ", ".join(f"{k} {v:,}" for k, v in total.items())
    rejected = sum(r.rejected for r in measured)
    if rejected:
        text += f", rejected {rejected:,} (see the notes)"
    if total["completed"] > total["sent"]:
        text += " (a message completes once on each of its routes)"
    locks = {k: sum(getattr(p, k) for r in measured for p in r.processes)
             for k in ("lock_waits", "lock_retries")}  # fmt: skip
    text += "".join(f", {k.replace('_', ' ')} {v:,}" for k, v in locks.items() if v)
    limited = [r for r in measured if flag(r) == "!"]
    crowded = [r for r in measured if flag(r) == "~"]
    if limited:
        text += (
            f"; the load generator's sends fell behind by its own doing in {len(limited)} of "
            "them (see their notes)"
        )
    if crowded:
        text += (
            f"; the sends fell behind in {len(crowded)} of them while the load generator "
            "waited for a CPU the services and brokers were using (see their notes)"
        )
    return "\n".join(_wrap(text))


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")
