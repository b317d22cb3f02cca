"""Reciprocal rank fusion (Cormack, Clarke and Buettcher, 2009)."""

from __future__ import annotations

from typing import Hashable, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]],
                           k: int = 60) -> list[tuple[Hashable, float]]:
    """Fuse ranked lists: score(x) = sum over lists of 1 / (k + rank of x), rank from 1.

    Returns (item, score) best first; ties keep the order of first appearance
    (earlier lists and better ranks first), so the result is deterministic.
    """
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    first_seen = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], first_seen[pair[0]]))
