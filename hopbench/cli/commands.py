"""What each subcommand does, once its arguments are parsed (hopbench.cli.parser)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from hopbench.cli.parser import build_parser
from hopbench.config import flags
from hopbench.config.deployment import Deployment
from hopbench.config.faults import Fault, Pause, check_faults
from hopbench.config.load import load_topology
from hopbench.config.outdir import OutLock, atomic_write_text, check_out_dir, why
from hopbench.config.runspec import LoadSpec
from hopbench.config.topology import Topology
from hopbench.errors import ConfigError
from hopbench.render.common import IMAGE, RenderRequest
from hopbench.run.session import Options, Session

N = TypeVar("N", int, float)


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
            + (f", db {svc.db.describe()}" if svc.db is not None else "")
            + (f", CPU on {svc.cpu_threads} thread(s)" if svc.cpu_threads is not None else "")
            + (f", {svc.lock.mode} lock (hot {svc.lock.hot:g})" if svc.lock is not None else "")
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


def run(args: argparse.Namespace) -> int:
    flags.check_run_flags(args)
    load = flags.load_from(args)
    settings = flags.settings_from(args.setting)
    topologies = topologies_of(args)
    faults = [Fault.parse(f) for f in args.fault]
    link = next((f for f in faults if f.on_link), None)
    if link is not None and (args.agents or args.worker_agents):
        raise ConfigError(
            f"--fault {link.text}: the connections are faulted through a proxy on this "
            "host's loopback, which agents on other hosts cannot reach; drop --agents "
            "and --worker-agents"
        )
    for topology in topologies:
        flags.check_load(topology, load)
        flags.check_levers(topology, settings)
        topology.check_settings(settings)
        flags.check_pauses(topology, [Pause.parse(p) for p in args.pause])
        replicas = {name: svc.replicas for name, svc in topology.services.items()}
        check_faults(faults, replicas, topology.modes, load.duration_s, args.kafka_bootstrap)
    if args.find_max and (load.closed or args.rates):
        raise ConfigError("--find-max searches the rate itself: drop --rates and --concurrency")
    rates = flags.rates(args.rates) if args.rates else [load.rate]
    check_out_dir(args.out)
    session = Session(
        Options(
            out_dir=args.out,
            settings=settings,
            deployment=_deployment(args),
            grace_s=args.grace,
            pauses=[Pause.parse(p) for p in args.pause],
            faults=faults,
            slo_p99_ms=args.slo_p99_ms,
            summarize_repeats=args.repeat > 1,
            write_report=not args.no_report,
        )
    )
    with OutLock(args.out):
        return session.execute(
            run_all(session, topologies, load, rates, args.repeat, args.find_max)
        )


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
        agent_token_file=args.agent_token_file,
        brokers_wait=args.brokers_wait,
        redis_url=args.redis_url,
        postgres_url=args.postgres_url,
    )


def compare(args: argparse.Namespace) -> int:
    from hopbench.run import suite

    out = args.out or Path("results") / args.suite.stem
    check_out_dir(out)
    with OutLock(out):
        spec, cells, session = suite.prepare(args.suite, out, args.resume, _deployment(args))
        return session.execute(suite.compare(spec, cells, session))  # titled by the suite


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
    to_stdout = args.json is not None and str(args.json) == "-"
    print(render_diff(found, args.strict), file=sys.stderr if to_stdout else sys.stdout)
    if args.json:
        text = json.dumps(diff_json(found, args.strict), indent=2)
        if to_stdout:
            print(text)
        else:
            write_file(args.json, text, "--json")
    return found.exit_status(args.strict)


def agent(args: argparse.Namespace) -> int:
    from hopbench.config.deployment import is_loopback
    from hopbench.config.secrets import TOKEN_ENV, read_token
    from hopbench.control.agent import Limits
    from hopbench.control.agent import main as serve_agent

    flags.check_agent_flags(args)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {args.listen}: expected HOST:PORT, e.g. 0.0.0.0:7070")
    host = host.strip("[]") or "0.0.0.0"
    token = read_token(args.token_file, "--token-file")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--listen {args.listen}: other hosts can reach this agent, so it needs a shared "
            f"token: set {TOKEN_ENV} (make one with: python3 -c 'import secrets; "
            "print(secrets.token_hex(32))') or pass --token-file FILE, and give the "
            "orchestrator the same; or listen on 127.0.0.1"
        )
    limits = Limits(
        max_connections=_at_least(args.max_connections, 1, "--max-connections"),
        start_within_s=_at_least(args.start_within, 1, "--start-within"),
        max_rate=_at_least(args.max_rate, 1, "--max-rate"),
        max_payload_bytes=_at_least(args.max_payload, 0, "--max-payload"),
        max_duration_s=_at_least(args.max_duration, 1, "--max-duration"),
    )
    if args.exit_idle is not None:
        _at_least(args.exit_idle, 0.1, "--exit-idle")
    ports = {"http": args.http_port, "grpc": args.grpc_port}
    serve_agent(host, int(port), ports, args.exit_idle, token, limits)
    return 0


def _at_least(value: N, least: float, flag: str) -> N:
    if not value >= least:  # NaN too
        raise ConfigError(f"{flag} {value}: must be at least {least:g}")
    return value


RESERVED = (
    "--agents",
    "--worker-agents",
    "--kafka-bootstrap",
    "--rabbitmq-url",
    "--redis-url",
    "--out",
)


def render_request(args: argparse.Namespace) -> tuple[RenderRequest, str]:
    import shlex

    from hopbench.config.secrets import redact

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
        parsed = build_parser().parse_args(["run", str(args.topology), *run_args, *extra])
    except SystemExit:
        raise ConfigError(
            f"--run-args {args.run_args!r}: not arguments of `hopbench run` (see above)"
        ) from None
    try:  # checked now, not when the rendered file runs
        flags.check_run_flags(parsed)
        flags.load_from(parsed)
        flags.settings_from(parsed.setting)
    except ConfigError as exc:
        raise ConfigError(f"--run-args: {exc}") from None
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
        + (["--rabbitmq-url", redact(args.rabbitmq_url)] if args.rabbitmq_url else [])
        + (["--image", args.image] if args.image != IMAGE else [])
        + ["--out", str(args.out or args.default_out)]
    )
    return request, command


def render(args: argparse.Namespace) -> int:
    from hopbench.render.compose import render_compose
    from hopbench.render.k8s import render_k8s

    request, command = render_request(args)
    out: Path = args.out or args.default_out
    if args.target == "compose":
        text = render_compose(request, out, command)
    else:
        if args.workers < 1:
            raise ConfigError(f"--workers {args.workers}: at least one load worker")
        text = render_k8s(request, args.workers, command)
    if str(out) != "-" and args.out is None and out.exists() and not args.force:
        raise ConfigError(
            f"{out} exists and --out did not name it: pass --force to replace it, "
            "--out FILE to write another file, or --out - for standard output"
        )
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        write_file(out, text, "--out")
        print(f"wrote {out}")
    if args.target == "compose":  # its secrets, beside the file (the current folder for -)
        from hopbench.render.compose import write_env_file

        env_path, added = write_env_file(request, out.parent)
        if added:
            print(
                f"wrote {', '.join(added)} to {env_path} (keep it out of version control)",
                file=sys.stderr if str(out) == "-" else sys.stdout,
            )
    return 0


def write_file(path: Path, text: str, flag: str) -> None:
    """A file the user named, written whole (its folder made if need be)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create its folder ({why(exc)})") from None
    atomic_write_text(path, text)
