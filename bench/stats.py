"""Confidence intervals for the ratios a timing bar compares, and how many rounds decide it.

A timing bar is a ratio of two sides measured alternately in one run (lorag / its
baseline). One figure per side says nothing about how much of the ratio is the
machine's drift: a shared two-core machine moves a round's ratio by 10-30%. So each
timing bar carries a 95% interval of its ratio, and the report says MET only when the
whole interval is inside the bar, NOT MET when it is wholly outside, and UNDECIDED
in between, with the number of rounds (or requests) that would narrow it enough.

Two estimates:

- ``rounds_interval``: rounds that each time both sides once (alternating which goes
  first). The ratio is the geometric mean of the per-round ratios; the interval is
  Student's t on their logarithms (ratios are multiplicative; the log makes
  1.2x and 1/1.2x equally far from 1).
- ``bootstrap_interval``: many requests per side (latency percentiles). The ratio of
  the two sides' statistic (p50, p99); the interval is the percentile bootstrap,
  resampling requests (pairs of requests when the two sides ran the same query back
  to back). Seeded: the same samples give the same interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
# Student's t, two-sided 95%, by degrees of freedom (1..30); above 30 the normal's 1.96
# is within 4%.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
BOOTSTRAP_DRAWS = 2000
FEWEST_ROUNDS = 3  # below this a spread estimate is not worth stating


def t95(dof: int) -> float:
    """The two-sided 95% quantile of Student's t with ``dof`` degrees of freedom."""
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


@dataclass(frozen=True)
class Interval:
    """A ratio with its 95% interval (``low``/``high`` None: too few samples to say),
    from ``samples`` rounds or requests (``per``: "rounds" or "requests")."""

    value: float
    low: float | None
    high: float | None
    samples: int
    per: str = "rounds"

    def needed(self, threshold: float) -> int | None:
        """Samples that would put the interval on one side of ``threshold``, at the
        spread seen so far (None: too few samples to estimate the spread, or the ratio
        sits on the threshold itself). The interval narrows as 1/sqrt(samples)."""
        if self.low is None or self.high is None or self.value <= 0 or threshold <= 0:
            return None
        half = (math.log(self.high) - math.log(self.low)) / 2
        distance = abs(math.log(self.value) - math.log(threshold))
        if distance == 0:
            return None
        if half <= distance:
            return self.samples
        return max(FEWEST_ROUNDS, math.ceil(self.samples * (half / distance) ** 2))


def rounds_interval(numerators: Sequence[float], denominators: Sequence[float]) -> Interval:
    """The ratio numerator/denominator of rounds measured side by side: the geometric
    mean of each round's ratio and Student's t interval on their logarithms."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("one numerator and one denominator per round, at least one round")
    logs = [math.log(a / b) for a, b in zip(numerators, denominators)]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return Interval(math.exp(mean), None, None, len(logs))
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def bootstrap_interval(numerator: Sequence[float], denominator: Sequence[float],
                       statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                       paired: bool = False, seed: int = 0) -> Interval:
    """statistic(numerator) / statistic(denominator) (default: the medians) with a
    percentile-bootstrap interval. ``paired``: sample i of both sides belongs together
    (the same query, back to back) and is resampled together. ``statistic`` maps a
    (draws, n) array to (draws,), along axis 1."""
    stat = statistic or (lambda x: np.median(x, axis=-1))
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if paired and len(a) != len(b):
        raise ValueError("paired samples need the same count on both sides")
    value = float(stat(a[None, :])[0] / stat(b[None, :])[0])
    n = min(len(a), len(b))
    if n < FEWEST_ROUNDS:
        return Interval(value, None, None, n, per="requests")
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(0, BOOTSTRAP_DRAWS, 200):  # in blocks: bounded memory at any n
        pick_a = rng.integers(0, len(a), (200, len(a)))
        pick_b = pick_a if paired else rng.integers(0, len(b), (200, len(b)))
        ratios.append(stat(a[pick_a]) / stat(b[pick_b]))
    draws = np.concatenate(ratios)
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(value, float(low), float(high), n, per="requests")


def percentile_statistic(q: float) -> Callable[[np.ndarray], np.ndarray]:
    """The q-th percentile (0-100, linear interpolation) along the last axis."""
    return lambda x: np.percentile(x, q, axis=-1)
