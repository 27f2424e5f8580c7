"""The committed generated modules are what the generator makes from the .proto."""

from __future__ import annotations

from pathlib import Path

from hopbench.proto import generate
from hopbench.proto.hopbench_pb2 import Envelope


def test_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    for fresh in generate.generate(tmp_path):
        committed = generate.PROTO_DIR / fresh.name
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"{committed.name} is stale: run `make proto` and commit the result"
        )


def test_envelope_round_trips_every_field() -> None:
    env = Envelope(id=7, flow="chain", worker=1, seq=9, intended_ns=10, sent_ns=11,
                   trace_id=12, warmup=True, run_id="r", payload=b"xy")  # fmt: skip
    env.hops.add(edge=1, service="gateway", replica=0, received_ns=20, forwarded_ns=21,
                 arrived_ns=19, gathered_ns=22, published_ns=23, replied_ns=24,
                 returned_ns=25)  # fmt: skip
    assert Envelope.FromString(env.SerializeToString()) == env
