"""Timing helpers shared by the benchmarks: warm up, then interleave the contenders."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    contenders: dict[str, Callable[[], object]], *, repeats: int = 30, warmup: int = 3
) -> dict[str, list[float]]:
    """Run each contender ``repeats`` times, alternating, after ``warmup`` calls each.

    Alternating (a, b, a, b, ...) rather than (a, a, ..., b, b, ...) spreads drifts of
    the machine (frequency, other processes) evenly over the contenders, so their
    ratio is fair even when absolute times wander.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def summary_ms(samples: list[float]) -> tuple[float, float, float]:
    """Median and the 25th/75th percentiles, in milliseconds."""
    q = statistics.quantiles(samples, n=4)
    return statistics.median(samples) * 1e3, q[0] * 1e3, q[2] * 1e3
