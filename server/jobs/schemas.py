"""A job (ingestion or training) with its progress and per-item failures."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


class JobFailure(BaseModel):
    item: str
    code: str
    message: str


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted: int
    completed: int
    failed: int
    result: dict[str, Any] | None
    error: str | None
    failures: list[JobFailure]
    created_at: float
    updated_at: float


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
