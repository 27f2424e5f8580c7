"""HdrHistograms as every recorder makes them: µs, 1 µs to 1 hour, 3 significant figures.

``record`` is on the hot path of every message (a load worker records up to seven
values per reply: latency, service time, send lag and four parts of a hop), so it
finds the count's index with integer arithmetic instead of hdrh's ``record_value``,
which does the same sums through five method calls and ``len(bin(value))``: about a
third of the cost, with exactly the same counts (tests/test_histogram.py holds that
for every bucket boundary and the range's ends).

``mean`` is hdrh's ``get_mean_value`` over the counts array at once: hdrh walks every
one of the 23,552 buckets in Python, about 45 ms per histogram, and a run's result
summarizes a dozen of them.
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything longer is counted as out of range
SIGNIFICANT_FIGURES = 3

# The shape hdrh derives from the three numbers above (lowest 1: no unit shift).
_HALF_MAGNITUDE = 10  # log2 of the sub-buckets in half a bucket: 2048 sub-buckets
_HALF_COUNT = 1 << _HALF_MAGNITUDE
_SUB_BUCKET_MASK = (2 << _HALF_MAGNITUDE) - 1
_SHIFT = _HALF_MAGNITUDE + 1


def new_histogram() -> HdrHistogram:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    if (
        histogram.unit_magnitude != 0
        or histogram.sub_bucket_half_count_magnitude != _HALF_MAGNITUDE
    ):  # a different hdrh would make record() wrong: fail loudly, at once
        raise RuntimeError("hdrh's histogram shape changed: update hopbench.measure.histogram")
    return histogram


def record(histogram: HdrHistogram, value_us: int) -> bool:
    """Record one value; False when it is beyond the histogram's range (not recorded).

    Only for histograms of ``new_histogram``'s shape (every one hopbench makes or
    decodes). The same index as hdrh's ``_counts_index_for``: the bucket is the
    value's bit length past the sub-bucket mask, the sub-bucket its top bits."""
    value = value_us if value_us > LOWEST_US else LOWEST_US
    bucket = (value | _SUB_BUCKET_MASK).bit_length() - _SHIFT
    index = ((bucket + 1) << _HALF_MAGNITUDE) + (value >> bucket) - _HALF_COUNT
    if index >= histogram.counts_len:
        return False
    histogram.counts[index] += 1
    histogram.total_count += 1
    if value < histogram.min_value:
        histogram.min_value = value
    if value > histogram.max_value:
        histogram.max_value = value
    return True


def mean(histogram: HdrHistogram) -> float:
    """The mean of the recorded values, as hdrh's ``get_mean_value`` computes it: each
    bucket's count times the middle of its range, over the total count."""
    total = histogram.total_count
    if not total:
        return 0.0
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    index = np.flatnonzero(counts)
    bucket = (index >> _HALF_MAGNITUDE) - 1
    sub_bucket = (index & (_HALF_COUNT - 1)) + _HALF_COUNT
    first = bucket < 0  # the first bucket also holds the lower half of sub-buckets
    sub_bucket[first] -= _HALF_COUNT
    bucket[first] = 0
    lowest = sub_bucket << bucket  # unit magnitude 0: new_histogram checks it
    middle = lowest + ((1 << bucket) >> 1)
    return float(np.dot(counts[index].astype(np.float64), middle.astype(np.float64)) / total)
