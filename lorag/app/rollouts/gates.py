"""Promotion gates: what a version must pass before it becomes ``stable``.

From the training report the version was registered with (``metrics.json`` of a
training run, kept in its lineage): held-out perplexity against the base model, the
forgetting ratio on general text, and the style-marker rate when the run had a marker.
When the brand has an evaluation set and a scorer is configured, an answer-level
comparison against the current ``stable``: per-question scores of both, decided by a
paired bootstrap confidence interval of the mean difference, never by the point
difference: a non-inferiority test, the candidate passes when the interval shows it is
no worse than stable by more than ``max_answer_regression`` (too few or too noisy
questions to show that is a failure, not a pass). A gate that cannot be checked (no report) fails and says why; ``--force``
promotes anyway and is recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from lorag.app.settings import GateSettings


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool | None  # None: does not apply (no marker, no evaluation set)
    detail: str

    def to_dict(self) -> dict:
        return {"gate": self.name, "passed": self.passed, "detail": self.detail}


def training_gates(report: dict | None, settings: GateSettings) -> list[GateResult]:
    """The gates read from a training report (None: the version has none)."""
    if not report:
        return [GateResult("training_report", False, "the version has no training report "
                           "(registered from a folder without metrics.json)")]
    return [_heldout(report.get("heldout"), settings), _forgetting(report.get("general"), settings),
            _marker(report.get("marker"), settings)]


def _heldout(heldout: dict | None, settings: GateSettings) -> GateResult:
    if not heldout:
        return GateResult("heldout_perplexity", False, "the training report has no held-out set")
    base, tuned = heldout["base_perplexity"], heldout["adapter_perplexity"]
    limit = base * settings.max_heldout_ratio
    return GateResult("heldout_perplexity", tuned <= limit,
                      f"adapter {tuned} vs base {base} (at most {limit:.3f})")


def _forgetting(general: dict | None, settings: GateSettings) -> GateResult:
    if not general:
        return GateResult("forgetting_ratio", False, "the training report has no general-text check")
    ratio = general["perplexity_ratio"]
    return GateResult("forgetting_ratio", ratio <= settings.max_forgetting_ratio,
                      f"{ratio} (at most {settings.max_forgetting_ratio})")


def _marker(marker: dict | None, settings: GateSettings) -> GateResult:
    if not marker or marker.get("adapter_rate") is None:
        return GateResult("marker_rate", None, "no style marker in the training run")
    rate = marker["adapter_rate"]
    return GateResult("marker_rate", rate >= settings.min_marker_rate,
                      f"{rate} (at least {settings.min_marker_rate})")


def paired_bootstrap(candidate: Sequence[float], stable: Sequence[float], *, samples: int,
                     confidence: float, seed: int = 0) -> tuple[float, float, float]:
    """(mean difference, low, high): the percentile bootstrap interval of the mean of
    ``candidate[i] - stable[i]`` over the same questions."""
    if len(candidate) != len(stable) or not candidate:
        raise ValueError("paired scores must be non-empty and of equal length")
    diffs = [c - s for c, s in zip(candidate, stable)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1 - confidence) / 2
    low, high = means[int(tail * samples)], means[min(samples - 1, int((1 - tail) * samples))]
    return sum(diffs) / n, low, high


def answer_gate(candidate: Sequence[float] | None, stable: Sequence[float] | None,
                settings: GateSettings) -> GateResult:
    """Candidate against the current stable on the brand's evaluation set; passes when
    the interval's low end is above ``-max_answer_regression``."""
    if candidate is None or stable is None:
        return GateResult("answer_quality", None, "no evaluation set or scorer for this brand")
    mean, low, high = paired_bootstrap(candidate, stable, samples=settings.bootstrap_samples,
                                       confidence=settings.confidence)
    passed = low > -settings.max_answer_regression
    return GateResult("answer_quality", passed,
                      f"mean difference {mean:+.4f}, {settings.confidence:.0%} interval "
                      f"[{low:+.4f}, {high:+.4f}] over {len(candidate)} questions")
