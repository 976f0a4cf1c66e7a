"""The benchmarks' one way to summarise timings: median and nearest-rank 95th percentile."""

from __future__ import annotations

import math
import statistics


def p50_p95(samples: list[float]) -> tuple[float, float]:
    """The median and the 95th percentile (nearest rank: the smallest value with 95% at or
    below it), of at least one sample."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[math.ceil(0.95 * len(ordered)) - 1]
