"""Documents in (a JSON batch) and out; ingestion answers with a job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from server.schemas import Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.jobs.schemas import Job  # noqa: F401
from server.schemas import Deleted, error_responses  # noqa: F401


class DocumentIn(Request):
    id: str = Field(min_length=1, max_length=512,
                    description="Stable id: sending an id again replaces that document when "
                    "its text changed.")
    text: str = Field(min_length=1)
    title: str | None = Field(None, max_length=1000)
    source: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsCreate(Request):
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)


class Document(BaseModel):
    id: str
    object: Literal["document"] = "document"
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    chunks: int
    characters: int
    content_hash: str
    created_at: float
    updated_at: float


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]
    has_more: bool
