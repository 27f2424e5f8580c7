"""What each subcommand does, once its arguments are parsed (hopbench.cli.parser)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from hopbench.cli.parser import build_parser
from hopbench.config import flags
from hopbench.config.deployment import Deployment
from hopbench.config.faults import Pause
from hopbench.config.load import load_topology
from hopbench.config.runspec import LoadSpec
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError
from hopbench.render.common import IMAGE, RenderRequest
from hopbench.run.session import Options, Session


def topologies_of(args: argparse.Namespace) -> list[Topology]:
    """The topology once per --mode and --pattern asked for, each overridden and checked."""
    return [
        load_topology(args.topology, args.set, mode, pattern)
        for mode in flags.modes(args.mode)
        for pattern in flags.patterns(args.pattern)
    ]


def validate(args: argparse.Namespace) -> int:
    for topology in topologies_of(args):
        print(describe(topology))
    return 0


def describe(topology: Topology) -> str:
    lines = [f"{topology.source}: topology '{topology.name}' is valid"]
    for name, svc in topology.services.items():
        lines.append(
            f"  service {name}: {svc.replicas} replica(s), cpu {svc.cpu_us} µs, "
            f"io {svc.io_ms:g} ms, reply {svc.reply_bytes} B"
            + (f", concurrency {svc.concurrency}" if svc.concurrency is not None else "")
        )
    for edge in topology.edges:
        lines.append(f"  edge[{edge.index}] {edge.name}: {edge.mode} {edge.pattern}")
    routes = topology.expected_routes()
    lines.append(
        "  completes at: "
        + ", ".join(f"{topology.route_label(r)} ({topology.route_measures(r)})" for r in routes)
    )
    lines += [f"  note: {note}" for note in topology.notes]
    return "\n".join(lines)


def _writable(out: Path) -> None:
    """--out made and writable, or a sentence that says how (a container's bind mount
    that Docker made for root, say), before anything runs."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create it: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise ConfigError(
            f"--out {out}: not writable by uid {os.getuid()}; make it writable by that user "
            f"(with compose: `mkdir -p results` before `up`, or `chown {os.getuid()} results`)"
        )


def run(args: argparse.Namespace) -> int:
    load = flags.load_from(args)
    settings = flags.settings_from(args.setting)
    topologies = topologies_of(args)
    for topology in topologies:
        flags.check_load(topology, load)
        flags.check_pauses(topology, [Pause.parse(p) for p in args.pause])
    if args.find_max and (load.closed or args.rates):
        raise ConfigError("--find-max searches the rate itself: drop --rates and --concurrency")
    rates = flags.rates(args.rates) if args.rates else [load.rate]
    _writable(args.out)
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


def _deployment(args: argparse.Namespace) -> Deployment:
    return Deployment.from_env(
        rabbitmq_url=args.rabbitmq_url,
        kafka_bootstrap=args.kafka_bootstrap,
        agents=args.agents,
        worker_agents=args.worker_agents,
        agents_wait=args.agents_wait,
    )


def compare(args: argparse.Namespace) -> int:
    from hopbench.run import suite

    out = args.out or Path("results") / args.suite.stem
    spec, cells, session = suite.prepare(args.suite, out, args.resume, _deployment(args))
    asyncio.run(suite.compare(spec, cells, session))
    return session.report()  # titled by the suite, which the results hold


def report(args: argparse.Namespace) -> int:
    from hopbench.results.report import write_report
    from hopbench.results.schema import Results
    from hopbench.results.terminal import terminal_summary

    results = Results.read(args.dir / "results.json")
    write_report(results, args.dir / "report.html", f"hopbench: {args.dir.name}")
    print(terminal_summary(results, [f"report: {args.dir / 'report.html'}"]))
    return 1 if any(r.failed and not r.probe for r in results.runs) else 0


def diff(args: argparse.Namespace) -> int:
    import json

    from hopbench.results.diff import Method, diff_results, read_side
    from hopbench.results.difftable import diff_json, render_diff

    method = Method.from_flags(args.fail_on, args.threshold, args.alpha)
    baseline = read_side(args.baseline, "BASELINE")
    candidate = read_side(args.candidate, "CANDIDATE")
    names = (str(args.baseline), str(args.candidate))
    found = diff_results(baseline, candidate, method, names)
    print(render_diff(found, args.strict))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(diff_json(found, args.strict), indent=2))
    return found.exit_status(args.strict)


def agent(args: argparse.Namespace) -> int:
    from hopbench.control.agent import main as serve_agent

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {args.listen}: expected HOST:PORT, e.g. 0.0.0.0:7070")
    serve_agent(host.strip("[]") or "0.0.0.0", int(port), args.http_port, args.grpc_port,
               args.exit_idle)  # fmt: skip
    return 0


RESERVED = ("--agents", "--worker-agents", "--kafka-bootstrap", "--rabbitmq-url", "--out")


def render_request(args: argparse.Namespace) -> tuple[RenderRequest, str]:
    import shlex

    topology = topologies_of(args)[-1]
    extra = shlex.split(args.run_args or "")
    for flag in extra:
        if flag.split("=")[0] in RESERVED:
            raise ConfigError(f"--run-args: {flag} is set by the rendered file itself")
    run_args = (
        (["--mode", args.mode] if args.mode else [])
        + (["--pattern", args.pattern] if args.pattern else [])
        + [a for s in args.set for a in ("--set", s)]
    )
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


def render(args: argparse.Namespace) -> int:
    from hopbench.render.compose import render_compose
    from hopbench.render.k8s import render_k8s

    request, command = render_request(args)
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
