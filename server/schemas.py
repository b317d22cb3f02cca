"""What every feature's bodies share: the strict request base, the error body and its
OpenAPI entries. Each feature keeps its own bodies in ``server/<feature>/schemas.py``.

Requests refuse unknown fields, so a misspelt option is a 400 naming it rather than
silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict

MAX_TOP_K = 100
FilterValue = Union[str, int, float, bool]


class Request(BaseModel):
    # Unknown fields are refused; numbers and booleans are Strict* types, so `true` is
    # not taken for 1, nor 1 for `true` (the OpenAPI document says integer, boolean).
    model_config = ConfigDict(extra="forbid")


# -- errors -------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error body for ``statuses``."""
    return {status: {"model": ErrorResponse} for status in statuses}


# -- answers several features give ----------------------------------------------------------

class Deleted(BaseModel):
    id: str
    object: str
    deleted: Literal[True] = True
