"""Whether a run failed, and its first cause in words; the notes that must agree with
the counts; the judgement against an SLO.

A run failed when a process died, any message failed (an error), went missing (lost),
was never sent (unsent), or nothing completed at all. A failed run is never ranked
(hopbench.results.report) and makes the command's exit status 1; everything it
measured is still written. A fault injected on purpose (--fault) is not a failure:
the process it killed is not a cause, and the errors and losses of such a run are
the fault's measured cost (counted, and named in its faults and notes). A broker of
the run's own that died unasked is the first cause.
"""

from __future__ import annotations

from hopbench.results.schema import ProcessResult, RunResult


def failure_of(run: RunResult) -> str | None:
    """Why the run failed, first cause first, or None when it did not."""
    causes = [f.what for f in run.faults if not f.fault]  # a broker that died on its own
    injected = {f.target for f in run.faults if f.fault}
    died = [p for p in run.processes if p.died and p.name not in injected]
    if died:
        causes.append("; ".join(f"{p.name} died: {p.died}" for p in died))
    first = first_error(run.processes)
    counted = not injected  # with faults injected, errors and losses are their cost
    if run.errors and counted:
        seen = f"; the first, at {first.name}: {first.first_error}" if first else ""
        causes.append(f"{run.errors} error(s){seen}")
    if run.lost and counted:
        causes.append(
            f"{run.lost} of {run.expected} message(s) lost (never completed within the grace "
            "period)"
        )
    if run.unsent:
        causes.append(
            f"{run.unsent} message(s) due were never sent (the load generator fell behind)"
        )
    if not causes and run.completed == 0:
        causes.append("no message was sent" if run.sent == 0 else "no message completed")
    if not causes:
        return None
    head, *rest = causes
    return head + (f" (also: {'; '.join(rest)})" if rest else "")


def first_error(processes: list[ProcessResult]) -> ProcessResult | None:
    """The process that saw the earliest error: the likeliest cause of the others."""
    seen = [p for p in processes if p.first_error is not None]
    return min(seen, key=lambda p: p.first_error_s or 0.0, default=None)


def count_notes(run: RunResult) -> list[str]:
    """Sentences about losses and warm-up errors, from the same counts the table shows."""
    notes = []
    if run.lost or run.warmup.lost:
        notes.append(
            f"{run.lost} measured message(s) and {run.warmup.lost} of the warm-up never "
            "completed within the grace period (nor the second one, for late completions): "
            "they count as lost"
        )
    first = first_error(run.processes)
    if not run.errors and run.warmup.errors and first is not None:
        notes.append(
            f"{run.warmup.errors} send(s) failed during the warm-up only; the first, at "
            f"{first.name}: {first.first_error}"
        )
    return notes + lock_notes(run.processes)


def lock_notes(processes: list[ProcessResult]) -> list[str]:
    """Per service with a lock in its work: what the lock cost, against its messages."""
    by_service: dict[str, list[int]] = {}
    for p in processes:
        if p.lock_waits or p.lock_retries:
            counts = by_service.setdefault(p.name.split("/")[0], [0, 0, 0])
            counts[0] += p.lock_waits
            counts[1] += p.lock_retries
    for p in processes:  # the messages of those services' replicas, every one of them
        if p.name.split("/")[0] in by_service:
            by_service[p.name.split("/")[0]][2] += p.handled
    notes = []
    for name, (waits, retries, handled) in by_service.items():
        per = f" of {handled:,} handled" if handled else ""
        if waits:
            notes.append(f"{name}: {waits:,} message(s){per} waited for their key's lock")
        if retries:
            ratio = f" ({retries / handled:.2f} per message handled)" if handled else ""
            notes.append(
                f"{name}: {retries:,} optimistic-lock retries{ratio}: work done again "
                "because another message changed the key meanwhile"
            )
    return notes


def judge(run: RunResult, slo_p99_ms: float | None = None) -> None:
    """Set the run's status and failure, and its verdict against the SLO if one is given."""
    run.failure = failure_of(run)
    run.status = "failed" if run.failure else "ok"
    run.slo_p99_ms = slo_p99_ms
    if slo_p99_ms is None:
        run.slo_met = None
    else:  # a failed run met nothing, whatever its few completions say
        run.slo_met = not run.failed and run.latency_us.p99 <= slo_p99_ms * 1000
