"""A search request and its ranked chunks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt

from lorag.core.modes import SEARCH_MODES
from server.schemas import MAX_TOP_K, FilterValue, Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


class SearchRequest(Request):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K)
    mode: Literal[tuple(m.value for m in SEARCH_MODES)] | None = None  # type: ignore[valid-type]
    filters: dict[str, FilterValue] | None = None
    document_ids: list[str] | None = Field(None, max_length=1000)


class SearchResult(BaseModel):
    chunk_id: int
    document_id: str
    position: int
    text: str
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    score: float = Field(description="The mode's own score: cosine (dense), BM25 (lexical), "
                                     "reciprocal rank fusion (hybrid).")
    dense_score: float | None = Field(
        description="The chunk's cosine to the query where the dense search ranked it.")
    lexical_match: bool = Field(
        description="The lexical search found it: it shares a content word with the query. "
                    "Chat shows the model only chunks that do or whose cosine reaches the "
                    "relevance floor.")


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchResult]
