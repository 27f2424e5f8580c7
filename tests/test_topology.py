"""Topology files: what is valid, and that every mistake gets one clear sentence
naming the file, the line and the field (exit status 2, never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hopbench.config.load import load_topology
from hopbench.errors import ConfigError
from tests.conftest import TOPOLOGIES

GOOD = """\
name: t
services:
  a:
    replicas: 1
  b:
    work: {cpu_us: 10}
edges:
  - {from: loadgen, to: a, mode: http}
  - {from: a, to: b, mode: kafka}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_topology(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_bundled_topologies_are_valid() -> None:
    for path in sorted(TOPOLOGIES.glob("*.yaml")):
        assert load_topology(path).services


def test_a_misspelled_mode_names_file_line_field_and_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("mode: kafka", "mode: kafak"))
    message = error_of(path)
    assert message.startswith(f"{path} line 9: edges[1].mode: 'kafak' is not one of")
    assert "http, grpc, kafka, rabbitmq" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("replicas: 1", "replicas: 0"), "line 4: services.a.replicas: 0: input should be greater"),
        (("replicas: 1", "replica: 1"), "line 4: services.a.replica: is not a known field"),
        (("to: b,", "to: c,"), "line 9: edges[1].to: 'c' is not a service of this topology"),
        (("name: t\n", ""), "name: is required but missing"),
        (("{cpu_us: 10}", "{cpu_us: lots}"), "line 6: services.b.work.cpu_us: 'lots'"),
        (
            ("mode: kafka}", "mode: http, pattern: publish-subscribe}"),
            "line 9: edges[1].pattern: publish-subscribe over http cannot be: HTTP delivers",
        ),
        (
            ("kafka}\n", "kafka}\n  - {from: b, to: a, mode: http}\n"),
            "line 10: edges[2]: edge b->a closes a cycle",
        ),
        (("- {from: a, to: b", "- {from: loadgen, to: b"), "exactly one edge from 'loadgen'"),
        (("  b:\n", "  c:\n    replicas: 1\n  b:\n"), "service 'c' is not reached from 'loadgen'"),
        (("edges:", "edges: [\n"), "not valid YAML"),
    ],
)
def test_mistakes_get_one_clear_sentence(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    assert expected in error_of(path)


def test_overrides_change_fields_and_a_new_mode_keeps_what_is_measured(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, GOOD)
    topology = load_topology(path, ["services.b.replicas=3", "edges.a->b.mode=rabbitmq"])
    assert topology.services["b"].replicas == 3
    # kafka's natural publish-subscribe, kept: RabbitMQ carries it
    assert (topology.edges[1].mode, topology.edges[1].pattern) == ("rabbitmq", "publish-subscribe")
    assert topology.notes == ()
    # HTTP's natural request-reply is kept over a broker: still the round trip
    brokered = load_topology(path, mode="rabbitmq")
    assert [e.pattern for e in brokered.edges] == ["request-reply", "publish-subscribe"]
    assert [brokered.route_measures(r) for r in brokered.expected_routes()] == [
        "round trip", "one-way to b"
    ]  # fmt: skip
    # publish-subscribe cannot be carried by gRPC: it falls back, and a note says so
    everything = load_topology(path, mode="grpc")
    assert [e.pattern for e in everything.edges] == ["request-reply", "fire-and-forget"]
    (note,) = everything.notes
    assert "a->b was publish-subscribe, which grpc cannot carry" in note
    by_index = load_topology(path, ["edges[1].mode=http"])
    assert (by_index.edges[1].mode, by_index.edges[1].pattern) == ("http", "fire-and-forget")
    assert by_index.notes[0].startswith("--set edges[1].mode=http: a->b was publish-subscribe")
    explicit = load_topology(path, ["edges[1].mode=http", "edges[1].pattern=request-reply"])
    assert (explicit.edges[1].pattern, explicit.notes) == ("request-reply", ())
    every = load_topology(path, mode="kafka", pattern="fire-and-forget")
    assert {e.pattern for e in every.edges} == {"fire-and-forget"}
    assert "--pattern publish-subscribe" in error_of(path, mode="http", pattern="publish-subscribe")


def test_bad_overrides_name_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert "(--set edges[1].mode=kafak)" in error_of(path, overrides=["edges[1].mode=kafak"])
    assert "no edge named a->z" in error_of(path, overrides=["edges.a->z.mode=http"])
    assert "expected PATH=VALUE" in error_of(path, overrides=["services.a.replicas"])
    assert "services.zz does not exist" not in error_of(path, overrides=["services.a.replicas=x"])


def test_the_cli_exits_2_with_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("mode: kafka", "mode: kafak"))
    for argv in (["validate", str(path)], ["run", str(path), "--duration", "1"],
                 ["validate", str(tmp_path / "missing.yaml")],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--rate", "0"],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--setting", "kafka_ack=1"],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--pause", "worker/3@1:1"],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--pause", "worker/0@soon"],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--pattern", "request-reply,ff"],
                 ["run", str(TOPOLOGIES / "chain.yaml"), "--mode", "kafka",
                  "--pattern", "fire-and-forget", "--concurrency", "4"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "hopbench", *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("hopbench: error: ")


def test_validate_shows_where_each_flow_completes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hopbench", "validate", str(TOPOLOGIES / "fanout.yaml")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert (
        "completes at: loadgen>publisher>billing (one-way to billing), "
        "loadgen>publisher>shipping (one-way to shipping)"
    ) in done.stdout
