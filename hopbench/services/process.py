"""One service replica: ``python -m hopbench.services --spec FILE --service NAME --replica N``.

Started by the orchestrator; ``ps`` shows which service and replica each process is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hopbench.brokers.reach import reach_brokers
from hopbench.config.cache import DEFAULT_REDIS_URL
from hopbench.config.runspec import RunSpec
from hopbench.errors import BrokerUnavailable, ConfigError
from hopbench.measure.usage import usage
from hopbench.protocol.channel import ChildChannel, run_child
from hopbench.protocol.messages import (
    Error,
    LateAfter,
    Progress,
    ProgressReply,
    Ready,
    Sample,
    Sampled,
    ServiceReport,
    Start,
)
from hopbench.services.cache import reach_redis
from hopbench.services.db import DbClient
from hopbench.services.runtime import ServiceRuntime
from hopbench.transports import make_transports
from hopbench.transports.context import TransportContext


def build_service(context: TransportContext, transport: str | None = None) -> ServiceRuntime:
    topology = context.topology
    edges = (*topology.in_edges(context.service), *topology.out_edges(context.service))
    return ServiceRuntime(
        topology,
        context.service,
        context.replica,
        context.run_id,
        make_transports(context, edges, transport),
        context.redis_url,
        db_client(context),
        context.settings.payload_content,
    )


def db_client(context: TransportContext) -> DbClient | None:
    """The replica's database client, if its work runs queries (work.db)."""
    work = context.topology.services[context.service].db
    if work is None:
        return None
    if context.postgres_url is None:
        raise ConfigError(
            f"service {context.service} runs database queries (work.db) but the run names "
            "no PostgreSQL; pass --postgres-url"
        )
    return DbClient(
        context.postgres_url,
        context.run_id,
        context.topology,
        context.service,
        work,
        wait_s=context.brokers_wait_s,
        seed=context.replica,
    )


async def serve(channel: ChildChannel, context: TransportContext) -> None:
    try:
        await reach_brokers(context)
        cache = context.topology.services[context.service].cache
        if cache is not None and cache.store == "redis":
            await reach_redis(context.redis_url or DEFAULT_REDIS_URL, context.brokers_wait_s)
    except BrokerUnavailable as exc:  # the orchestrator names this process and says why
        channel.emit(Error(message=str(exc)))
        return
    runtime = build_service(context)
    recorder = runtime.recorder
    try:
        await runtime.start()
        channel.emit(Ready(usage=usage()))
        async for command in channel.commands():
            match command:
                case Start(start_ns=start_ns, origin_ns=origin_ns):
                    runtime.begin(start_ns, origin_ns)
                case LateAfter(t_ns=t_ns):
                    recorder.late_after_ns = t_ns
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
                            in_flight=runtime.in_flight,
                            held=runtime.mean_in_flight(),
                            calls=dict(runtime.calls),
                            backlog=0,
                            cpu_s=usage().cpu_s,
                            db_waiting=runtime.db.waiting if runtime.db else 0,
                        )
                    )
    finally:
        await runtime.close()
    channel.emit(
        ServiceReport(
            handled=runtime.handled,
            errors=runtime.errors,
            first_error=runtime.first_error,
            late_replies=runtime.late_replies,
            wire=runtime.wire(),
            rejected=runtime.rejected,
            first_rejected=runtime.first_rejected,
            db=runtime.db.report() if runtime.db else None,
            recorder=recorder.to_json(),
            cache=None if runtime.cache is None else runtime.cache.stats.to_json(),
            connections=runtime.connection_counts(),
            lock_waits=runtime.limits.lock_waits,
            lock_retries=runtime.limits.lock_retries,
            usage=usage(),  # last: the report's own cost counts
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m hopbench.services")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--replica", type=int, required=True)
    args = parser.parse_args()
    context = TransportContext.of(RunSpec.read(args.spec), args.service, args.replica)
    run_child(lambda channel: serve(channel, context))
