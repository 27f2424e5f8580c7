"""The report's charts as inline SVG (matplotlib, Agg): the figure helpers every chart
shares, and the stacked breakdown of where a route's mean latency goes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from hopbench.results.schema import Breakdown

# one colour per kind of part, the same for every hop; hops are told apart by the
# white line between them and their names on the bar
PART_COLOURS = {
    "send lag": "#b0b0b0",
    "transit": "#4c78a8",
    "wait": "#f58518",
    "work": "#54a24b",
    "rest": "#9d7fbf",
}
LABEL_MIN_FRACTION = 0.07  # a hop's name is written on its span if it is this wide


def svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def figure(title: str, size: tuple[float, float] = (8, 4.2)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=size)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    return fig, axes


def close(fig: Any) -> str:
    import matplotlib.pyplot as plt

    text = svg(fig)
    plt.close(fig)
    return text


def segments(breakdown: Breakdown) -> list[tuple[str, str, float]]:
    """(hop, part, mean µs) along the critical path, in order; off-path hops left out."""
    found = [("loadgen", "send lag", breakdown.send_lag_us)]
    for hop in breakdown.hops:
        if hop.on_path == 0:
            continue
        parts = (("transit", hop.transit_us), ("wait", hop.wait_us),
                 ("work", hop.work_us), ("rest", hop.rest_us))  # fmt: skip
        found += [(hop.service, part, us) for part, us in parts]
    return found


def breakdown_chart(route: str, bars: Sequence[tuple[str, Breakdown]]) -> str:
    """One stacked horizontal bar per (variant @ load): each hop's transit, wait, work and
    rest, in path order, as shares of the mean latency in ms."""
    from matplotlib.patches import Patch

    fig, axes = figure(f"Where the time goes: {route}", (8, 1.2 + 0.55 * len(bars)))
    axes.grid(False)
    axes.grid(True, axis="x", alpha=0.3)
    widest = max((b.latency_mean_us for _, b in bars), default=0) / 1000 or 1
    for y, (_, breakdown) in enumerate(bars):
        left = 0.0
        for hop, part, spans in _hop_spans(segments(breakdown)):
            start = left
            for name, width in spans:
                axes.barh(y, width, left=left, color=PART_COLOURS[name], height=0.6,
                          edgecolor="none")  # fmt: skip
                left += width
            axes.plot([left, left], [y - 0.3, y + 0.3], color="white", linewidth=1.5)
            if part and left - start >= LABEL_MIN_FRACTION * widest:
                axes.text((start + left) / 2, y, hop, ha="center", va="center",
                          fontsize="x-small", color="white")  # fmt: skip
    axes.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("mean ms per completion (the parts of the critical path)")
    axes.set_xlim(left=0)
    handles = [Patch(color=colour, label=name) for name, colour in PART_COLOURS.items()]
    axes.legend(handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    return close(fig)


def _hop_spans(
    found: list[tuple[str, str, float]],
) -> list[tuple[str, bool, list[tuple[str, float]]]]:
    """Consecutive segments grouped by hop: (hop, is a service, [(part, width ms)])."""
    grouped: list[tuple[str, bool, list[tuple[str, float]]]] = []
    for hop, part, us in found:
        if not grouped or grouped[-1][0] != hop:
            grouped.append((hop, part != "send lag", []))
        grouped[-1][2].append((part, max(us, 0.0) / 1000))
    return grouped
