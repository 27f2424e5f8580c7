"""The terminal's table of database work (services with ``work.db``): per run and
replica, its queries, how long they waited for a pool connection and how long
they ran. The two apart say which fix applies: a slow query (an index) or a pool
too small (more connections)."""

from __future__ import annotations

from collections.abc import Sequence

from hopbench.results.schema import RunResult

HEADER = ["run", "replica", "query", "queries", "wait p50", "wait p99", "run p50", "run p99"]


def render_db(runs: Sequence[RunResult]) -> str:
    rows: list[list[str]] = []
    for run in runs:
        for process in run.processes:
            db = process.db
            if db is None:
                continue
            wait, ran = db.get("wait_ms", {}), db.get("query_ms", {})
            index = "indexed" if db.get("index") else "no index"
            rows.append(
                [
                    f"{run.variant or run.mode} @ {run.load_label}"[:40],
                    process.name,
                    f"{db.get('query')} of {db.get('rows', 0):,} rows, {index}, "
                    f"pool {db.get('pool')}",
                    f"{db.get('queries', 0):,}",
                    *(f"{part.get(p, 0.0):.3g}" for part in (wait, ran) for p in ("p50", "p99")),
                ]
            )
    if not rows:
        return ""
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = "database queries (ms): waiting for a pool connection, then running"
    return "\n".join([title, *lines])
