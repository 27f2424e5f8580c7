"""The hopbench command line: `validate` a topology, `run` it, `compare` a suite, `report`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import pydantic

from hopbench.config.deployment import GRPC_PORT, HTTP_PORT, Deployment
from hopbench.config.faults import Pause
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec, Settings
from hopbench.config.topology import LOADGEN, MODES, Topology
from hopbench.errors import ConfigError, HopbenchError
from hopbench.render.common import IMAGE, RenderRequest
from hopbench.run.session import Options, Session


def _modes(text: str | None) -> list[str | None]:
    if text is None:
        return [None]
    modes = list(MODES) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)} (or 'all')")
    return list(modes)


def _settings(assignments: list[str]) -> Settings:
    values: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--setting {assignment}: expected KEY=VALUE, e.g. kafka_acks=-1")
        if key not in Settings.model_fields:
            known = ", ".join(Settings.model_fields)
            raise ConfigError(f"--setting {key}: not a setting; known: {known}")
        values[key] = value
    try:
        return Settings.model_validate(values)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ConfigError(f"--setting {err['loc'][0]}: {err['msg']}") from None


def _load(args: argparse.Namespace) -> LoadSpec:
    try:
        return LoadSpec(
            rate=args.rate,
            duration_s=args.duration,
            warmup_s=args.warmup,
            payload_bytes=args.payload,
            workers=args.workers or default_workers(),
            max_in_flight=args.max_in_flight,
            arrival=args.arrival,
            seed=args.seed,
            concurrency=args.concurrency,
            think_ms=args.think_ms,
        )
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        flag = {"duration_s": "duration", "warmup_s": "warmup", "payload_bytes": "payload"}.get(
            str(err["loc"][0]), str(err["loc"][0])
        )
        raise ConfigError(f"--{flag.replace('_', '-')}: {err['msg']}") from None


def default_workers() -> int:
    """What the machine can spare: a quarter of its cores, at least one."""
    return max(1, (os.cpu_count() or 1) // 4)


def check_load(topology: Topology, load: LoadSpec) -> None:
    if load.closed and not (topology.entry_edge.is_sync and topology.records_completion(LOADGEN)):
        raise ConfigError(
            f"--concurrency: a closed loop waits for each message to complete, but "
            f"'{topology.name}' over {topology.mode_label} completes at "
            f"{topology.route_label(topology.expected_routes()[0])}, not at the load "
            "generator; use an open loop (--rate) or request-reply edges"
        )


def cmd_validate(args: argparse.Namespace) -> int:
    for mode in _modes(args.mode):
        topology = load_topology(args.topology, args.set, mode)
        print(describe(topology))
    return 0


def describe(topology: Topology) -> str:
    lines = [f"{topology.source}: topology '{topology.name}' is valid"]
    for name, svc in topology.services.items():
        lines.append(
            f"  service {name}: {svc.replicas} replica(s), cpu {svc.cpu_us} µs, "
            f"io {svc.io_ms:g} ms, reply {svc.reply_bytes} B"
        )
    for edge in topology.edges:
        lines.append(f"  edge[{edge.index}] {edge.name}: {edge.mode} {edge.pattern}")
    lines.append(
        "  completes at: " + ", ".join(topology.route_label(r) for r in topology.expected_routes())
    )
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    load = _load(args)
    settings = _settings(args.setting)
    topologies = [load_topology(args.topology, args.set, mode) for mode in _modes(args.mode)]
    for topology in topologies:
        check_load(topology, load)
        for pause in (Pause.parse(p) for p in args.pause):
            service, _, replica = pause.target.partition("/")
            svc = topology.services.get(service)
            if svc is None or not replica.isdigit() or int(replica) >= svc.replicas:
                names = ", ".join(f"{n}/0..{s.replicas - 1}" for n, s in topology.services.items())
                raise ConfigError(f"--pause {pause.target}: no such replica; there are {names}")
    if args.find_max and (load.closed or args.rates):
        raise ConfigError("--find-max searches the rate itself: drop --rates and --concurrency")
    rates = _rates(args.rates) if args.rates else [load.rate]
    args.out.mkdir(parents=True, exist_ok=True)
    session = Session(
        Options(
            out_dir=args.out,
            settings=settings,
            deployment=_deployment(args),
            grace_s=args.grace,
            pauses=[Pause.parse(p) for p in args.pause],
            slo_p99_ms=args.slo_p99_ms,
            summarize_repeats=args.repeat > 1,
        )
    )
    asyncio.run(run_all(session, topologies, load, rates, args.repeat, args.find_max))
    return session.report()


async def run_all(
    session: Session,
    topologies: list[Topology],
    load: LoadSpec,
    rates: list[float],
    repeat: int,
    find_max: bool,
) -> None:
    try:
        for topology in topologies:
            if find_max:
                await session.search(topology, load)
                continue
            for rate in rates:
                for _ in range(repeat):
                    await session.run_one(topology, load.model_copy(update={"rate": rate}))
    finally:
        await session.release()


def _rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--rates: {text!r} is not a comma list of numbers") from None
    if not rates or min(rates) <= 0:
        raise ConfigError(f"--rates: {text!r}: rates are positive numbers")
    return rates


def _deployment(args: argparse.Namespace) -> Deployment:
    return Deployment.from_env(
        rabbitmq_url=args.rabbitmq_url,
        kafka_bootstrap=args.kafka_bootstrap,
        agents=args.agents,
        worker_agents=args.worker_agents,
        agents_wait=args.agents_wait,
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from hopbench.run.suite import compare, prepare

    out = args.out or Path("results") / args.suite.stem
    suite, cells, session = prepare(args.suite, out, args.resume, _deployment(args))
    asyncio.run(compare(suite, cells, session))
    return session.report(f"hopbench: {suite.name} ({suite.description or suite.topology})")


def cmd_report(args: argparse.Namespace) -> int:
    from hopbench.results.report import summary, summary_table, write_report
    from hopbench.results.schema import Results

    results = Results.read(args.dir / "results.json")
    write_report(results, args.dir / "report.html", f"hopbench: {args.dir.name}")
    print(summary_table(summary(results)))
    print(f"\nreport: {args.dir / 'report.html'}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from hopbench.control import agent

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {args.listen}: expected HOST:PORT, e.g. 0.0.0.0:7070")
    agent.main(host.strip("[]") or "0.0.0.0", int(port), args.http_port, args.grpc_port,
               args.exit_idle)  # fmt: skip
    return 0


RESERVED = ("--agents", "--worker-agents", "--kafka-bootstrap", "--rabbitmq-url", "--out")


def _render_request(args: argparse.Namespace) -> tuple[RenderRequest, str]:
    import shlex

    topology = [load_topology(args.topology, args.set, m) for m in _modes(args.mode)][-1]
    extra = shlex.split(args.run_args or "")
    for flag in extra:
        if flag.split("=")[0] in RESERVED:
            raise ConfigError(f"--run-args: {flag} is set by the rendered file itself")
    run_args = (["--mode", args.mode] if args.mode else []) + [
        a for s in args.set for a in ("--set", s)
    ]
    try:
        build_parser().parse_args(["run", str(args.topology), *run_args, *extra])
    except SystemExit:
        raise ConfigError(
            f"--run-args {args.run_args!r}: not arguments of `hopbench run` (see above)"
        ) from None
    request = RenderRequest(
        topology,
        args.topology,
        [*run_args, *extra],
        image=args.image,
        kafka_bootstrap=args.kafka_bootstrap,
        rabbitmq_url=args.rabbitmq_url,
    )
    command = shlex.join(
        ["hopbench", "render", args.target, str(args.topology), *run_args]
        + (["--run-args", args.run_args] if args.run_args else [])
        + (["--workers", str(args.workers)] if args.target == "k8s" else [])
        + (["--kafka-bootstrap", args.kafka_bootstrap] if args.kafka_bootstrap else [])
        + (["--rabbitmq-url", args.rabbitmq_url] if args.rabbitmq_url else [])
        + (["--image", args.image] if args.image != IMAGE else [])
        + ["--out", str(args.out)]
    )
    return request, command


def cmd_render(args: argparse.Namespace) -> int:
    from hopbench.render.compose import render_compose
    from hopbench.render.k8s import render_k8s

    request, command = _render_request(args)
    if args.target == "compose":
        text = render_compose(request, args.out, command)
    else:
        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: at least one load worker")
        text = render_k8s(request, args.workers, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hopbench",
        description="Measure what each style of service-to-service communication costs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    def topology_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("topology", type=Path, help="a topology YAML file")
        p.add_argument(
            "--mode",
            help=f"set every edge to one mode: {', '.join(MODES)}; "
            "a comma list or 'all' runs once per mode",
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

    validate = sub.add_parser("validate", help="check a topology file and show what it runs")
    topology_args(validate)
    validate.set_defaults(func=cmd_validate)

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
        default=0,
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
        help="with --find-max: p99 latency a rate must stay within",
    )
    run.add_argument(
        "--pause",
        action="append",
        default=[],
        metavar="SERVICE/N@AT:SECONDS",
        help="freeze a replica during the run, e.g. worker/0@5:1 (a stall)",
    )
    deployment_args(run)
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.set_defaults(func=cmd_run)

    comp = sub.add_parser("compare", help="run every cell of a comparison suite")
    comp.add_argument("suite", type=Path, help="a suite YAML file")
    comp.add_argument(
        "--out", type=Path, default=None, help="output folder (default results/SUITE-NAME)"
    )
    comp.add_argument(
        "--resume",
        action="store_true",
        help="keep the cells an interrupted run finished; run the rest",
    )
    deployment_args(comp)
    comp.set_defaults(func=cmd_compare)

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
        t.add_argument("--out", type=Path, default=Path(default_out), help="the file to write")
        if target == "k8s":
            t.add_argument("--workers", type=int, default=2, help="load worker pods (default 2)")
        t.set_defaults(func=cmd_render)

    ag = sub.add_parser(
        "agent",
        help="serve as a service replica or load worker for an orchestrator elsewhere",
    )
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
        help="after a run, exit when no run starts for this long (a safety net for Job pods)",
    )
    ag.set_defaults(func=cmd_agent)

    rep = sub.add_parser("report", help="write report.html again from a results folder")
    rep.add_argument("dir", type=Path, help="a folder with results.json")
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.func(args)
    except HopbenchError as exc:
        print(f"hopbench: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("hopbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
