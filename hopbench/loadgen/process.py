"""One load worker: ``python -m hopbench.loadgen --spec FILE --worker N``.

It connects, says Ready, waits for Start (with the shared start time, so several
workers keep one schedule), runs, and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from hopbench import clock
from hopbench.brokers.reach import reach_brokers
from hopbench.config.runspec import LoadSpec, RunSpec
from hopbench.config.topology import LOADGEN
from hopbench.errors import BrokerUnavailable
from hopbench.loadgen.schedule import ClosedSchedule, OpenSchedule
from hopbench.loadgen.worker import LoadWorker
from hopbench.measure.usage import usage
from hopbench.protocol.channel import ChildChannel, run_child
from hopbench.protocol.messages import (
    Error,
    Progress,
    ProgressReply,
    Ready,
    Sample,
    Sampled,
    Start,
    WorkerReport,
)
from hopbench.transports import make_transports
from hopbench.transports.base import connection_counts
from hopbench.transports.context import TransportContext

log = logging.getLogger("hopbench.loadgen")


def build_worker(
    context: TransportContext, load: LoadSpec, transport: str | None = None
) -> LoadWorker:
    topology = context.topology
    transports = make_transports(context, [topology.entry_edge], transport)
    return LoadWorker(
        topology,
        context.run_id,
        context.replica,
        transports[topology.entry_edge.mode],
        load.payload_bytes,
        load.max_in_flight,
        context.settings.payload_content,
    )


def schedule_for(load: LoadSpec, worker: int, start_ns: int) -> OpenSchedule | ClosedSchedule:
    w, workers = worker, load.workers
    if load.concurrency is not None:
        # users split across workers; the first ones take the remainder
        users = load.concurrency // workers + (1 if w < load.concurrency % workers else 0)
        return ClosedSchedule(
            start_ns, load.duration_s, load.warmup_s, max(users, 1), load.think_ms / 1000
        )
    return OpenSchedule(
        start_ns, load.rate, load.duration_s, load.warmup_s, w, workers, load.arrival, load.seed
    )


async def drive(channel: ChildChannel, context: TransportContext, load: LoadSpec) -> None:
    """Run the schedule when told to start, answering progress requests meanwhile."""
    worker = build_worker(context, load)
    running: asyncio.Task[None] | None = None

    async def run(start_ns: int) -> None:
        try:
            report = await worker.drive(schedule_for(load, context.replica, start_ns))
        except Exception as exc:
            log.exception("the load worker failed")
            channel.emit(Error(message=f"load worker failed: {exc!r}"))
            return
        channel.emit(
            WorkerReport(
                sends=report.summary(),
                first_error=worker.first_error,
                recorder=worker.recorder.to_json(),
                late_replies=worker.transport.late_replies,
                wire=worker.transport.wire.to_json(),
                rejected=worker.transport.rejected,
                first_rejected=worker.transport.admission.first,
                connections=connection_counts([worker.transport]),
                usage=usage(),  # last: the report's own cost counts
            )
        )

    recorder = worker.recorder
    try:
        await reach_brokers(context)
    except BrokerUnavailable as exc:  # the orchestrator names this process and says why
        channel.emit(Error(message=str(exc)))
        return
    await worker.transport.start()
    try:
        channel.emit(Ready(usage=usage()))
        async for command in channel.commands():
            match command:
                case Start(start_ns=start_ns) if running is None:
                    running = asyncio.create_task(run(start_ns))
                case Progress(second=second):
                    live = None if second is None else recorder.series.snapshot(second)
                    channel.emit(
                        ProgressReply(
                            completed=recorder.completed_count(), live=live, usage=usage()
                        )
                    )
                case Sample(k=k):
                    channel.emit(
                        Sampled(
                            k=k,
                            in_flight=0,
                            held=0.0,
                            calls={worker.entry.name: worker.in_flight},
                            backlog=worker.backlog(clock.now_ns()),
                            cpu_s=usage().cpu_s,
                        )
                    )
    finally:
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await worker.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m hopbench.loadgen")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--worker", type=int, required=True)
    args = parser.parse_args()
    spec = RunSpec.read(args.spec)
    context = TransportContext.of(spec, LOADGEN, args.worker)
    run_child(lambda channel: drive(channel, context, spec.load))
