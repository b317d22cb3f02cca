"""Feedback bodies: a rating of a stored answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.schemas import Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


class FeedbackCreate(Request):
    rating: Literal[1, -1] = Field(description="+1 (good) or -1 (bad).")
    comment: str | None = Field(None, max_length=4000)
    tags: list[str] = Field(default_factory=list, max_length=16,
                            description="Up to 16 labels of 1-64 characters.")


class Feedback(BaseModel):
    id: str = Field(description="The stored answer's id.")
    object: Literal["chat.completion.feedback"] = "chat.completion.feedback"
    rating: int
    comment: str | None
    tags: list[str]
    created_at: float
