"""fusion_testkit.stats: the percentile the benchmarks and scripts report."""

from __future__ import annotations

import math

from fusion_testkit.stats import percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))
