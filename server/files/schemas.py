"""OpenAI's file objects and their list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from lorag.core.files import FilePurpose
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import Deleted, error_responses  # noqa: F401

UPLOAD_SCHEMA = {"type": "object", "required": ["file", "purpose"], "properties": {
    "file": {"type": "string", "format": "binary",
             "description": "The file. For vector stores: text, Markdown, reST, HTML, PDF, Word, "
                            "PowerPoint, Excel, CSV, EPUB or e-mail; for fine-tuning: chat JSONL."},
    "purpose": {"type": "string", "enum": [p.value for p in FilePurpose],
                "description": "`assistants` or `user_data` (vector stores), `fine-tune`."}}}


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
