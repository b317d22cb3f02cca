"""Values exchanged between retrieval, ingestion and the chat orchestration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SearchMode = Literal["dense", "lexical", "hybrid"]


@dataclass(frozen=True)
class SearchHit:
    """One retrieved chunk with its provenance; ``score`` is the mode's own score
    (cosine for dense, BM25 for lexical, RRF for hybrid): higher is better."""

    chunk_id: int
    document_id: str
    position: int
    text: str
    title: str | None
    source: str | None
    metadata: dict = field(default_factory=dict)
    score: float = 0.0
