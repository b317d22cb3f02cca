"""The sequential test behind automatic rollback, valid under continuous monitoring.

Compare a split target (the *arm*, share ``w`` of the traffic the two get together)
with the brand's own target (the *control*). Look only at bad events (an error, or a
-1 rating): each one falls on the arm or on the control. Requests are assigned to
targets by a hash of their key, independently of how they turn out, so if the arm is
no worse than the control (equal rates), each bad event falls on the arm with
probability ``w``, independently of the others. If the arm's rate is ``ratio`` times
the control's, that probability is ``p1 = w*ratio / (w*ratio + 1 - w)``.

The test multiplies, event by event, the likelihood ratio of ``p1`` against ``w``
(Wald's SPRT with only the upper boundary: a "power-one" test). Under equal rates this
product is a non-negative martingale with mean 1, so by Ville's inequality the chance
that it *ever* reaches ``1/alpha`` is at most ``alpha``: looking after every request,
forever, keeps the false-rollback rate at most ``alpha``. When the arm really is worse,
the product grows and the rollback comes after a number of bad events that
``simulate`` measures (bench/bench_rollback.py records it).

Assumption: bad events of different requests are independent given their targets. A
key (conversation) that errs repeatedly on one target makes events dependent; the
rates it reports then describe conversations as much as targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AttributionTest:
    """One-sided SPRT on which target the bad events fall on."""

    alpha: float
    ratio: float

    @property
    def threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    def step(self, arm_share: float, on_arm: bool) -> float:
        """The log likelihood ratio one bad event adds (on the arm or on the control)."""
        w = arm_share
        p1 = w * self.ratio / (w * self.ratio + 1.0 - w)
        return math.log(p1 / w) if on_arm else math.log((1.0 - p1) / (1.0 - w))

    def rejects(self, llr: float) -> bool:
        return llr >= self.threshold


@dataclass(frozen=True)
class Simulation:
    runs: int
    requests: int
    rollbacks: int
    median_requests_to_rollback: float | None
    p90_requests_to_rollback: float | None

    @property
    def rollback_rate(self) -> float:
        return self.rollbacks / self.runs


def simulate(test: AttributionTest, *, arm_share: float, control_rate: float, arm_rate: float,
             requests: int, runs: int, seed: int = 0, chunk: int = 500) -> Simulation:
    """Monte Carlo: ``runs`` streams of ``requests`` requests, each to the arm with
    probability ``arm_share`` and bad with the rate of its target; the test looks after
    every request. Returns how many streams were rolled back and after how many requests.

    Only bad events move the test, so a stream is drawn as its bad events: the gaps
    between them are geometric, and each falls on the arm with its conditional chance."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bad = arm_share * arm_rate + (1 - arm_share) * control_rate
    on_arm_given_bad = arm_share * arm_rate / bad
    events = int(requests * bad * 1.3) + 50
    up, down = test.step(arm_share, True), test.step(arm_share, False)
    stops: list[int] = []
    for start in range(0, runs, chunk):
        n = min(chunk, runs - start)
        position = np.cumsum(rng.geometric(bad, (n, events)), axis=1)
        llr = np.cumsum(np.where(rng.random((n, events)) < on_arm_given_bad, up, down), axis=1)
        crossed = (llr >= test.threshold) & (position <= requests)
        hit = crossed.any(axis=1)
        first = crossed.argmax(axis=1)
        stops += position[np.flatnonzero(hit), first[hit]].tolist()
    stops.sort()
    median = float(stops[len(stops) // 2]) if stops else None
    p90 = float(stops[int(len(stops) * 0.9)]) if stops else None
    return Simulation(runs, requests, len(stops), median, p90)
