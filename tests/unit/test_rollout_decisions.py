"""The decisions behind rollouts: the sequential test keeps its false-rollback rate and
catches a worse canary (a small Monte Carlo; bench/bench_rollouts.py runs the large
one), and the promotion gates decide by the training report and by a paired bootstrap
interval, never by a point difference."""

from __future__ import annotations

import math
import random

from lorag.app.rollouts.gates import answer_gate, paired_bootstrap, training_gates
from lorag.app.rollouts.sequential import AttributionTest, simulate
from lorag.app.settings import GateSettings


def test_an_equal_canary_is_rarely_rolled_back_and_a_worse_one_always():
    test = AttributionTest(alpha=0.05, ratio=2.0)
    equal = simulate(test, arm_share=0.5, control_rate=0.05, arm_rate=0.05, requests=20_000,
                     runs=2000, seed=3)
    # at most alpha, with 3 standard errors of slack for the 2000 runs
    assert equal.rollback_rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    worse = simulate(test, arm_share=0.5, control_rate=0.05, arm_rate=0.15, requests=20_000,
                     runs=500, seed=4)
    assert worse.rollback_rate == 1.0 and worse.median_requests_to_rollback < 1000


def test_each_bad_event_moves_the_test_the_right_way():
    test = AttributionTest(alpha=0.05, ratio=2.0)
    assert test.step(0.05, on_arm=True) > 0 > test.step(0.05, on_arm=False)
    # the expected step under equal rates is negative (a supermartingale in log terms)
    assert 0.05 * test.step(0.05, True) + 0.95 * test.step(0.05, False) < 0
    assert test.rejects(test.threshold) and not test.rejects(test.threshold - 1e-9)


def test_training_gates_name_what_fails():
    settings = GateSettings()
    good = {"heldout": {"base_perplexity": 10.0, "adapter_perplexity": 6.0},
            "general": {"perplexity_ratio": 1.05}, "marker": {"adapter_rate": 0.8}}
    assert all(g.passed for g in training_gates(good, settings))
    bad = {"heldout": {"base_perplexity": 10.0, "adapter_perplexity": 11.0},
           "general": {"perplexity_ratio": 1.9}, "marker": {"adapter_rate": 0.1}}
    assert [g.name for g in training_gates(bad, settings) if g.passed is False] == [
        "heldout_perplexity", "forgetting_ratio", "marker_rate"]
    assert [g.name for g in training_gates(None, settings)] == ["training_report"]
    no_marker = dict(good, marker=None)
    assert [g.passed for g in training_gates(no_marker, settings)] == [True, True, None]


def test_the_answer_gate_decides_by_the_bootstrap_interval():
    rng = random.Random(0)
    settings = GateSettings(bootstrap_samples=1000)
    stable = [rng.random() for _ in range(200)]
    same = [s + rng.gauss(0, 0.05) for s in stable]
    worse = [s - 0.1 + rng.gauss(0, 0.05) for s in stable]
    assert answer_gate(same, stable, settings).passed is True
    refused = answer_gate(worse, stable, settings)
    assert refused.passed is False and "interval" in refused.detail
    mean, low, high = paired_bootstrap(worse, stable, samples=1000, confidence=0.95)
    assert low < mean < high < 0
    # not the point difference: a slightly lower mean, tightly measured, passes ...
    slightly_lower = [s - 0.005 + rng.gauss(0, 0.01) for s in stable]
    assert sum(slightly_lower) < sum(stable)
    assert answer_gate(slightly_lower, stable, settings).passed is True
    # ... and a few noisy questions fail whatever their mean: the interval reaches far
    # below the allowed regression (the candidate is not shown to be no worse)
    noisy_stable = [rng.random() for _ in range(8)]
    noisy = [s + 0.02 + rng.gauss(0, 0.3) for s in noisy_stable]
    mean, low, _ = paired_bootstrap(noisy, noisy_stable, samples=1000, confidence=0.95)
    assert low < -settings.max_answer_regression
    assert answer_gate(noisy, noisy_stable, settings).passed is False
    assert answer_gate(None, stable, settings).passed is None
