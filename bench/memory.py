"""Memory: load-worker RSS after a 10-minute run is within 10 % of after a 1-minute run.

The same one-hop HTTP flow at a steady rate, once for 60 s and once for 600 s; the
load worker's peak RSS (ru_maxrss) from each. Everything a worker keeps grows with
the number of messages only by a bit per message (the sequence bitmaps) and a few
hundred bytes per second (the encoded per-second histograms); everything else is
bounded. Takes about 12 minutes.
"""

from __future__ import annotations

import sys

import uvloop

from bench.common import one_hop, run, write_section
from hopbench.config.runspec import LoadSpec

RATE = 500


async def main() -> None:
    short_s, long_s = (60, 600) if "--quick" not in sys.argv else (10, 60)
    rss = {}
    for seconds in (short_s, long_s):
        load = LoadSpec(rate=RATE, duration_s=seconds, warmup_s=2, payload_bytes=100)
        result = await run(one_hop("http"), load)
        if result.lost or result.errors:
            raise SystemExit(f"the {seconds} s run lost {result.lost}, errors {result.errors}")
        (worker,) = [p for p in result.processes if p.name.startswith("loadgen/")]
        rss[seconds] = worker.peak_rss_mb
    growth = rss[long_s] / rss[short_s] - 1
    write_section(
        "Load-worker memory over time",
        f"""
One HTTP hop at {RATE}/s; the load worker's peak RSS.

| run | messages | load worker peak RSS |
|---|---|---|
| {short_s} s | {RATE * short_s:,} | {rss[short_s]:.1f} MB |
| {long_s} s | {RATE * long_s:,} | {rss[long_s]:.1f} MB |

Growth: **{growth * 100:+.1f} %** (aim: within 10 %).
""",
    )


if __name__ == "__main__":
    uvloop.run(main())
