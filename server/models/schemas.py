"""The caller's brands as OpenAI models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
