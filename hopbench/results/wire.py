"""Bytes on the wire per message: each edge's counts summed over its senders, and
how a reader sees them (the terminal's block, a line per edge in the report)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence

from hopbench.config.settings import Settings
from hopbench.results.cells import variant_label
from hopbench.results.schema import EdgeResult, RunResult, WireResult

_COUNTS = ("messages", "encoded_bytes", "wire_messages", "wire_bytes", "replies",
           "reply_encoded_bytes", "reply_wire_messages", "reply_wire_bytes")  # fmt: skip


def _per(total: int, count: int) -> float | None:
    return round(total / count, 1) if count else None


def wire_result(settings: Settings, counts: Iterable[Mapping[str, int]]) -> WireResult | None:
    """One edge's counts from every process that sent on it; None when none did."""
    total = dict.fromkeys(_COUNTS, 0)
    for one in counts:
        for key in _COUNTS:
            total[key] += int(one.get(key, 0))
    if not total["messages"] and not total["replies"]:
        return None
    return WireResult(
        encoding=settings.encoding,
        compression=settings.compression,
        **total,
        encoded_per_message=_per(total["encoded_bytes"], total["messages"]),
        wire_per_message=_per(total["wire_bytes"], total["wire_messages"]),
        reply_encoded_per_message=_per(total["reply_encoded_bytes"], total["replies"]),
        reply_wire_per_message=_per(total["reply_wire_bytes"], total["reply_wire_messages"]),
    )


def _bytes(value: float | None) -> str:
    return "n/m" if value is None else f"{value:,.0f} B"


def wire_text(edge: EdgeResult) -> str:
    """'protobuf gzip: 1,128 B encoded, 542 B written; reply 228 B, 170 B'."""
    wire = edge.wire
    if wire is None:
        return ""
    text = (
        f"{wire.encoding} {wire.compression}: {_bytes(wire.encoded_per_message)} encoded, "
        f"{_bytes(wire.wire_per_message)} written"
    )
    if wire.replies:
        text += (
            f"; reply {_bytes(wire.reply_encoded_per_message)}, "
            f"{_bytes(wire.reply_wire_per_message)}"
        )
    return text


def render_wire(runs: Sequence[RunResult]) -> str:
    """Per run and edge, the bytes per message: shown when a run changed the encoding
    or the compression of any edge (else every run's are the plain protobuf sizes)."""
    changed = any(
        e.wire is not None and (e.wire.encoding, e.wire.compression) != ("protobuf", "none")
        for r in runs
        for e in r.edges
    )
    if not changed:
        return ""
    lines = textwrap.wrap(
        "bytes on the wire per message (the body as encoded, and as written after "
        "compression; no protocol headers; n/m: not measured):",
        100,
    )
    for run in runs:
        if run.probe or run.failed:
            continue
        lines.append(f"  {variant_label(run)} @ {run.load_label}"[:100])
        lines += [f"    {e.name}: {wire_text(e)}"[:100] for e in run.edges if e.wire is not None]
    return "\n".join(lines)
