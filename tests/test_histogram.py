"""The recorders' fast ``record`` against hdrh's own ``record_value``: same counts;
the fast ``mean`` against hdrh's ``get_mean_value``: the same mean."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram

from hopbench.measure.histogram import HIGHEST_US, mean, new_histogram, record


def _values() -> list[int]:
    """Every bucket's edges (powers of two, one either side), the range's ends and
    beyond, and random values of every magnitude."""
    edges = [v for k in range(45) for v in (2**k - 1, 2**k, 2**k + 1)]
    rng = random.Random(7)
    spread = [int(2 ** rng.uniform(0, 42)) for _ in range(20_000)]
    return [-5, 0, 1, 2, 2047, 2048, 2049, HIGHEST_US, HIGHEST_US * 2, *edges, *spread]


def test_record_matches_hdrh_exactly() -> None:
    ours, theirs = new_histogram(), new_histogram()
    for value in _values():
        ok = record(ours, value)
        assert ok == bool(theirs.record_value(max(value, 1))), value
    assert list(ours.counts) == list(theirs.counts)
    assert ours.get_total_count() == theirs.get_total_count()
    assert (ours.min_value, ours.max_value) == (theirs.min_value, theirs.max_value)
    for q in (50, 90, 99, 99.9, 100):
        assert ours.get_value_at_percentile(q) == theirs.get_value_at_percentile(q)


def test_out_of_range_is_refused_and_not_counted() -> None:
    hist = new_histogram()
    assert record(hist, 2**45) is False
    assert hist.get_total_count() == 0
    assert record(hist, HIGHEST_US) is True


def test_encoded_round_trip_keeps_counts() -> None:
    hist = new_histogram()
    for value in _values():
        record(hist, value)
    decoded = HdrHistogram.decode(hist.encode())
    assert decoded.get_total_count() == hist.get_total_count()
    assert decoded.get_value_at_percentile(99) == hist.get_value_at_percentile(99)


def test_mean_matches_hdrh_on_every_bucket_and_decoded_histograms() -> None:
    everything = new_histogram()
    for value in _values():
        record(everything, value)
    rng = random.Random(11)
    latencies = new_histogram()  # the usual shape: a body near 1 ms and a long tail
    for _ in range(5_000):
        record(latencies, int(rng.lognormvariate(7, 1)))
    one = new_histogram()
    record(one, 1)
    decoded = new_histogram()
    decoded.decode_and_add(latencies.encode())
    for hist in (everything, latencies, one, decoded):
        assert mean(hist) == pytest.approx(hist.get_mean_value(), rel=1e-12)
    assert mean(new_histogram()) == 0.0
