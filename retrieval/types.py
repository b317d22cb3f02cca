"""Values exchanged between retrieval, ingestion and the chat orchestration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchHit:
    """One retrieved chunk with its provenance (``metadata``: its document's, with the
    chunk's location in it: "section", "page", "slide", "sheet" where the document's
    format has them); ``score`` is the mode's own score
    (cosine for dense, BM25 for lexical, RRF for hybrid): higher is better."""

    chunk_id: int
    document_id: str
    position: int
    text: str
    title: str | None
    source: str | None
    metadata: dict = field(default_factory=dict)
    score: float = 0.0
    # What the question and the chunk have in common, whatever the mode: the cosine where
    # the dense search ranked the chunk, and whether the lexical search (stop words
    # dropped) found it. The chat's relevance floor reads these.
    dense_score: float | None = None
    lexical_match: bool = False


@dataclass(frozen=True)
class StoredDocument:
    """A document as the tenant's store holds it (its text lives in its chunks)."""

    id: str
    title: str | None
    source: str | None
    metadata: dict
    content_hash: str
    chunks: int
    characters: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChunkWrite:
    """One chunk to store: its place in the normalised document text and its token count."""

    position: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    location: dict = field(default_factory=dict)  # where in the document: section, page...


@dataclass
class DocumentWrite:
    """A document with its chunks and their vectors (one row per chunk), stored atomically."""

    id: str
    title: str | None
    source: str | None
    metadata: dict
    content_hash: str
    characters: int
    chunks: list[ChunkWrite]
    vectors: "object"  # np.ndarray (len(chunks), dimension) float32
