"""Small statistics for the figures the benchmarks and scripts print."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values), max(1, math.ceil(len(sorted_values) * q / 100)))
    return float(sorted_values[rank - 1])
