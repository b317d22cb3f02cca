"""Sticky weighted routing: which of a brand's targets serves a request.

A request's key (the OpenAI ``user`` field, a session id in ``metadata``, else the
first user message) is hashed with the tenant and brand to a point ``u`` in [0, 1):
the split's arms take consecutive slices of [0, 1) by percentage, the brand's own
target the rest. The same key always lands on the same target for as long as the split
is unchanged, and over many keys each arm gets its share (SHA-256 is uniform).
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Sequence

from lorag.core.brands import Brand


class Role(str, Enum):
    """Which part of a brand's rollout a request went to."""

    PRIMARY = "primary"  # the brand's own target
    SPLIT = "split"  # a target of the split (a canary)
    SHADOW = "shadow"  # the shadow copy; never returned


def routing_key(key: str | None, messages: Sequence[dict]) -> str:
    """``key`` when given, else the first user message (a conversation keeps its target)."""
    if key:
        return "key:" + key
    first = next((m.get("content") for m in messages if m.get("role") == "user"), "")
    return "message:" + (first if isinstance(first, str) else "")


def unit_hash(*parts: str) -> float:
    """A uniform point in [0, 1) from the parts (SHA-256, 53 bits)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def pick(tenant_id: str, brand: Brand, key: str) -> tuple[str, Role]:
    """(target, role) for ``key`` over the brand's split."""
    u = unit_hash("split", tenant_id, brand.name, key) * 100.0
    edge = 0.0
    for arm in brand.split:
        edge += arm.percent
        if u < edge:
            return arm.target, Role.SPLIT
    return brand.target, Role.PRIMARY


def shadow_sampled(brand: Brand, request_id: str) -> bool:
    """Whether this request is copied to the brand's shadow (by its id, so a retry of
    the same request decides the same way)."""
    return brand.shadow is not None and unit_hash("shadow", request_id) < brand.shadow.rate
