"""Exact counts after merging: lost, duplicated (within and across recorders),
errors and warm-up, from sequence bitmaps; histograms merged, never averaged."""

from __future__ import annotations

from hopbench.config.load import load_topology
from hopbench.loadgen.worker import WorkerReport
from hopbench.measure.merge import SendSummary, merge
from hopbench.measure.recorder import Recorder, SeqBitmap
from hopbench.proto.hopbench_pb2 import Envelope
from tests.conftest import TOPOLOGIES

ROUTE = (0, 1)  # chain over kafka, fire-and-forget: loadgen>gateway>worker


def worker(sent: int, first_measured: int, failed: tuple[int, ...] = ()) -> SendSummary:
    report = WorkerReport(worker=0, sent=sent, first_measured_seq=first_measured)
    for seq in failed:
        report.failed.add(seq)
    return report.summary()


def complete(recorder: Recorder, seqs: list[int], first_measured: int, latency_us: int) -> None:
    for seq in seqs:
        env = Envelope(worker=0, seq=seq, intended_ns=0, sent_ns=0, warmup=seq < first_measured)
        recorder.complete(ROUTE, env, latency_us * 1000)


def test_lost_duplicated_and_errors_are_exact() -> None:
    topology = load_topology(TOPOLOGIES / "chain.yaml", mode="kafka", pattern="fire-and-forget")
    replica0, replica1 = Recorder(), Recorder()
    complete(replica0, list(range(0, 60)), 10, latency_us=1000)
    complete(replica0, [55], 10, latency_us=1000)  # duplicate within one recorder
    complete(replica1, list(range(58, 95)), 10, latency_us=3000)  # 58, 59 seen by both
    sent, routes = merge(
        topology,
        [worker(100, 10, failed=(97,))],
        {"worker/0": replica0.to_json(), "worker/1": replica1.to_json()},
    )
    assert (sent.sent, sent.warmup_sent, sent.errors) == (90, 10, 1)
    (route,) = routes
    assert route.completed == 85  # seqs 10..94
    assert route.expected == 89  # 90 measured, one failed to send
    assert route.lost == 4  # 95, 96, 98, 99
    assert route.duplicated == 3  # 55 again, 58 and 59 across replicas
    assert route.warmup_lost == 0
    # each recorder drops its own duplicates; one seen by two recorders is in both of
    # their histograms (they cannot be de-duplicated once merged): 85 + 58 and 59
    assert route.latency.get_total_count() == route.completed + 2
    assert route.latency.get_value_at_percentile(100) >= 2990


def test_bitmap_round_trip_and_duplicates() -> None:
    bitmap = SeqBitmap()
    assert bitmap.add(0)
    assert bitmap.add(1000)
    assert not bitmap.add(1000)
    again = SeqBitmap.decode(bitmap.encode())
    assert again.as_int() == (1 << 1000) | 1


def test_out_of_range_values_are_counted_not_dropped_silently() -> None:
    recorder = Recorder()
    env = Envelope(worker=0, seq=0, intended_ns=0, sent_ns=0)
    recorder.complete((), env, 10**16)  # 10^10 s: beyond the histogram's range
    (record,) = recorder.routes.values()
    assert record.out_of_range == 1
    assert record.completed == 1


def test_negative_latencies_are_counted() -> None:
    recorder = Recorder()
    recorder.complete((), Envelope(worker=0, seq=0, intended_ns=5_000_000, sent_ns=0), 0)
    assert next(iter(recorder.routes.values())).negative == 1
