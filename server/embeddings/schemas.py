"""Embedding bodies: OpenAI's shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictInt

# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import Request, error_responses  # noqa: F401


class EmbeddingRequest(Request):
    model: str = Field(description="The embedding model's name (all-MiniLM-L6-v2 by "
                       "default), or one of your brands.", min_length=1, max_length=200)
    input: str | list[str] = Field(description="A text or a list of up to 2048 texts "
                                   "(token arrays are not supported).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: each vector as base64 of its little-endian float32s.")
    dimensions: StrictInt | None = Field(None, ge=1, description="Only the model's own size.")
    user: str | None = Field(None, max_length=512, description="Your end user's id (logged).")

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
