"""The command line's parser: arguments only. What the values must be is checked in
hopbench.config.flags; what each command does is in hopbench.cli.commands."""

from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path

from hopbench.config.deployment import BROKERS_WAIT_S, GRPC_PORT, HTTP_PORT
from hopbench.config.topology import MODES, PATTERNS
from hopbench.render.common import IMAGE


def topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("topology", type=Path, help="a topology YAML file")
    p.add_argument(
        "--mode",
        help=f"set every edge to one mode: {', '.join(MODES)}; "
        "a comma list or 'all' runs once per mode",
    )
    p.add_argument(
        "--pattern",
        help=f"set every edge's pattern: {', '.join(PATTERNS)}; a comma list runs once "
        "per pattern (and mode). Without it, an edge keeps its pattern when --mode or --set "
        "changes its mode",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override one field, e.g. services.worker.replicas=2 or "
        "'edges.gateway->worker.mode=kafka' (keep the quotes in a shell)",
    )


def deployment_args(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("where the brokers and processes are")
    where.add_argument(
        "--rabbitmq-url",
        help="RabbitMQ to use (default $HOPBENCH_RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672/)",
    )
    where.add_argument(
        "--redis-url",
        help="the Redis of a shared cache, work.cache store redis "
        "(default $HOPBENCH_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    where.add_argument(
        "--postgres-url",
        help="PostgreSQL for services whose work runs queries (work.db; default "
        "$HOPBENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    where.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        help="a Kafka to use instead of the embedded one (default $HOPBENCH_KAFKA_BOOTSTRAP)",
    )
    where.add_argument(
        "--agents",
        metavar="TEMPLATE",
        help="drive service replicas running `hopbench agent` at these addresses, "
        "e.g. '{service}-{replica}:7070' (compose) or '{service}:7070' (DNS, Kubernetes)",
    )
    where.add_argument(
        "--worker-agents",
        metavar="TEMPLATE",
        help="the same for load workers ({service} is 'loadgen'); default: local processes",
    )
    where.add_argument(
        "--agents-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep trying agents that do not answer yet for this long (default 0)",
    )
    where.add_argument(
        "--agent-token-file",
        type=Path,
        metavar="FILE",
        help="the agents' shared token (default $HOPBENCH_AGENT_TOKEN); it never travels",
    )
    where.add_argument(
        "--brokers-wait",
        type=float,
        default=BROKERS_WAIT_S,
        metavar="SECONDS",
        help="keep trying a broker that does not answer yet for this long; 0: one try "
        f"(default {BROKERS_WAIT_S:g}). A broker that refuses the credentials is not retried",
    )


def diff_args(p: argparse.ArgumentParser) -> None:
    for side, what in (("baseline", "the reference"), ("candidate", "the change")):
        p.add_argument(
            side,
            type=Path,
            help=f"{what}: a results folder, its results.json, or a folder of results "
            "folders (their runs pooled, e.g. measured interleaved)",
        )
    p.add_argument(
        "--fail-on",
        metavar="METRICS",
        help="the metrics whose getting worse exits 1: a comma list of p50, p99, throughput, "
        "cpu (default all four)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=10.0,
        metavar="PCT",
        help="a smaller change of the medians (percent) is within noise (default 10)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="significance level of the Mann-Whitney U test (default 0.01)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 also when a gated metric could not be judged (too few repeats, not "
        "measured) or a baseline cell is missing from the candidate",
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="write the diff as JSON too; - writes it to standard output (the table then "
        "goes to standard error)",
    )


AGENT_LIMITS: list[tuple[str, type[int] | type[float], float, str]] = [
    ("--max-connections", int, 8, "control connections at once"),
    ("--start-within", float, 600.0, "seconds from a connection to its run's start"),
    ("--max-rate", float, 50_000.0, "messages per second of one load worker"),
    ("--max-payload", int, 1024 * 1024, "payload bytes"),
    ("--max-duration", float, 3600.0, "seconds of warm-up and measured window"),
]


def agent_args(ag: argparse.ArgumentParser) -> None:
    ag.add_argument(
        "--listen", default="0.0.0.0:7070", help="control address (default 0.0.0.0:7070)"
    )
    for mode, port in (("http", HTTP_PORT), ("grpc", GRPC_PORT)):
        ag.add_argument(f"--{mode}-port", type=int, default=port, help=f"default {port}")
    ag.add_argument(
        "--exit-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit when no run starts for this long, from the start and after each run "
        "(a safety net for Job pods)",
    )
    ag.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="serve only an orchestrator with this shared token (default "
        "$HOPBENCH_AGENT_TOKEN); required when --listen is not a loopback address",
    )
    limits = ag.add_argument_group("what the agent accepts")
    for flag, kind, default, what in AGENT_LIMITS:
        limits.add_argument(flag, type=kind, default=default, help=f"{what} (default {default:g})")


def fault_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pause",
        action="append",
        default=[],
        metavar="SERVICE/N@AT:SECONDS",
        help="freeze a replica during the run, e.g. worker/0@5:1 (a stall)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ACTION:TARGET@AT",
        help="inject a fault at AT s of the measured window: kill:worker/0@5s, "
        "kill:worker/0@5s+restart, kill:kafka@5s, restart:kafka@5s, drop:rabbitmq@5s, "
        "delay:rabbitmq@5s:2s+200ms (docs/faults.md)",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("hopbench")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hopbench",
        description="Measure what each style of service-to-service communication costs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--version", action="version", version=f"hopbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check a topology file and show what it runs")
    topology_args(validate)

    run = sub.add_parser("run", help="run a topology under open-loop load and measure it")
    topology_args(run)
    run.add_argument("--rate", type=float, default=200.0, help="messages per second (default 200)")
    run.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    run.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)"
    )
    run.add_argument("--payload", type=int, default=100, help="payload bytes (default 100)")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="load worker processes (default: a quarter of the cores, at least 1)",
    )
    run.add_argument(
        "--arrival",
        choices=["constant", "poisson"],
        default="constant",
        help="open-loop gaps: even, or exponential (default constant)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of Poisson arrivals (default 0)")
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="closed loop with this many users instead of a rate",
    )
    run.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="closed loop: pause after each reply (default 0)",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        default=10_000,
        help="requests a worker may have outstanding (default 10000)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds sinks may take after the last send (default 5)",
    )
    run.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a transport setting, e.g. kafka_acks=-1 or rabbitmq_confirms=true",
    )
    run.add_argument("--rates", metavar="R1,R2,...", help="run each rate in turn (a sweep)")
    run.add_argument(
        "--repeat", type=int, default=1, help="run each cell N times; report the median and spread"
    )
    run.add_argument(
        "--find-max",
        action="store_true",
        help="search for the highest rate that keeps up, starting at --rate",
    )
    run.add_argument(
        "--slo-p99-ms",
        type=float,
        default=None,
        help="judge every run against this p99 (ms); with --find-max, a rate must stay within it",
    )
    fault_args(run)
    deployment_args(run)
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.add_argument(
        "--no-report",
        action="store_true",
        help="write results.json and the summary only, not report.html (its charts take "
        "seconds of CPU); `hopbench report OUT` writes it later",
    )

    comp = sub.add_parser("compare", help="run every cell of a comparison suite")
    comp.add_argument("suite", type=Path, help="a suite YAML file")
    comp.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default results/ and the suite file's name without .yaml, "
        "e.g. results/quick)",
    )
    comp.add_argument(
        "--resume",
        action="store_true",
        help="keep the cells an interrupted run finished; run the rest",
    )
    deployment_args(comp)

    render_parsers(sub)

    ag = sub.add_parser(
        "agent",
        help="serve as a service replica or load worker for an orchestrator elsewhere",
    )
    agent_args(ag)

    dif = sub.add_parser(
        "diff", help="compare two results cell by cell: better, worse or within noise"
    )
    diff_args(dif)

    rep = sub.add_parser("report", help="write report.html again from a results folder")
    rep.add_argument("dir", type=Path, help="a folder with results.json")
    return parser


def render_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ren = sub.add_parser("render", help="write a compose file or Kubernetes manifests")
    targets = ren.add_subparsers(dest="target", required=True)
    for target, what, default_out in (
        ("compose", "a compose file: brokers, a container per replica", "docker-compose.yml"),
        ("k8s", "Kubernetes manifests: Deployments, Services, Jobs", "hopbench-k8s.yaml"),
    ):
        t = targets.add_parser(target, help=what)
        topology_args(t)
        t.add_argument(
            "--run-args",
            metavar="ARGS",
            help="more arguments for the orchestrator's `hopbench run`, e.g. '--rate 500'",
        )
        t.add_argument("--kafka-bootstrap", help="use this Kafka instead of running one")
        t.add_argument("--rabbitmq-url", help="use this RabbitMQ instead of running one")
        t.add_argument("--image", default=IMAGE, help=f"the hopbench image (default {IMAGE})")
        t.add_argument(
            "--out",
            type=Path,
            default=None,
            help=f"the file to write, - for standard output (default {default_out}, "
            "which is not replaced without --force)",
        )
        t.add_argument("--force", action="store_true", help=f"replace an existing {default_out}")
        t.set_defaults(default_out=Path(default_out))
        if target == "k8s":
            t.add_argument("--workers", type=int, default=2, help="load worker pods (default 2)")
