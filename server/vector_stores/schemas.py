"""OpenAI's vector store, vector store file and search shapes."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, Field, StrictBool, StrictInt

from server.schemas import Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401

AttributeValue = Union[str, float, bool]
FILTER_DOC = ("OpenAI's attribute filter: a comparison `{\"type\": \"eq\"|\"ne\"|\"gt\"|\"gte\"|"
              "\"lt\"|\"lte\"|\"in\"|\"nin\", \"key\", \"value\"}` or a compound "
              "`{\"type\": \"and\"|\"or\", \"filters\": [...]}`.")


class AutoChunking(Request):
    type: Literal["auto"] = Field(description="lorag chunks with the tenant's ingest settings; "
                                  "a `static` strategy is refused.")


class VectorStoreCreate(Request):
    name: str | None = Field(None, max_length=256)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)
    chunking_strategy: AutoChunking | None = None


class VectorStoreUpdate(Request):
    name: str | None = Field(None, max_length=256)
    metadata: dict[str, str] | None = Field(None, max_length=16)


class FileCounts(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str | None
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["in_progress", "completed", "expired"]
    expires_after: None = None
    expires_at: None = None
    last_active_at: int
    metadata: dict[str, str]


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStore]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: Literal[True] = True


class VectorStoreFileCreate(Request):
    file_id: str = Field(min_length=1, max_length=100)
    attributes: dict[str, AttributeValue] | None = None
    chunking_strategy: AutoChunking | None = None


class VectorStoreFileUpdate(Request):
    attributes: dict[str, AttributeValue]


class LastError(BaseModel):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class StaticChunking(BaseModel):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class ChunkingStrategy(BaseModel):
    type: Literal["static"] = "static"
    static: StaticChunking


class VectorStoreFile(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "failed", "cancelled"]
    last_error: LastError | None
    usage_bytes: int
    attributes: dict[str, AttributeValue]
    chunking_strategy: ChunkingStrategy


class VectorStoreFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreFile]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: Literal[True] = True


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class FileContentPage(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextContent]
    has_more: bool = False
    next_page: None = None


class RankingOptions(Request):
    ranker: Literal["auto", "default-2024-11-15"] | None = Field(
        None, description="Both name lorag's hybrid search (dense + BM25, fused by RRF).")
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)


class SearchRequest(Request):
    query: str | list[str] = Field(description="A list of queries is searched as one text.")
    filters: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    max_num_results: StrictInt = Field(10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: StrictBool = Field(False, description="`true` is refused: lorag does not "
                                      "rewrite queries.")


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, AttributeValue]
    content: list[TextContent]


class SearchResultsPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: None = None
