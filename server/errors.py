"""The one place where errors become HTTP: every error a client sees, streamed or not,
is ``{"error": {"message", "type", "param", "code"}}`` and never holds a traceback."""

from __future__ import annotations

import json
import logging
import math
import re
from contextlib import contextmanager
from typing import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lorag.core.errors import (AuthenticationFailed, ClientError, Conflict, LoragError, NotFound,
                               PayloadTooLarge, PermissionDenied, RateLimited, ServerError,
                               Unavailable)

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
# Each class of the error tree as (HTTP status, OpenAI error type); the most specific
# class that an error is an instance of wins (a subclass is listed before its base).
_STATUSES: tuple[tuple[type[LoragError], int, str], ...] = (
    (NotFound, 404, "invalid_request_error"),
    (Conflict, 409, "invalid_request_error"),
    (AuthenticationFailed, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (PayloadTooLarge, 413, "invalid_request_error"),
    (RateLimited, 429, "rate_limit_error"),
    (ClientError, 400, "invalid_request_error"),
    (Unavailable, 503, "server_error"),
    (LoragError, 500, "server_error"),
)
_LOCATIONS = ("body", "query", "path", "header", "cookie")
# pydantic adds the member type of a union to an error's location ("str", "list[TextPart]",
# "function-after[...]", a model's class name); field names are lowercase identifiers.
_TYPE_TAG = re.compile(r"^(str|int|float|bool|bytes|none|[A-Z]\w*)$|[\[\]-]")


def as_lorag_error(exc: BaseException) -> LoragError:
    """``exc`` itself when it is a LoragError; else a generic 500 (logged with its traceback)."""
    if isinstance(exc, LoragError):
        return exc
    log.error("unhandled error", exc_info=exc)
    return ServerError("internal server error")


def http_status(error: LoragError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of ``error``'s class."""
    return next((status, kind) for cls, status, kind in _STATUSES if isinstance(error, cls))


def error_body(error: LoragError, error_type: str) -> dict:
    """The OpenAI-shaped error body: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": error.message, "type": error_type, "param": error.param,
                      "code": error.code}}


def error_response(exc: BaseException, status: int | None = None) -> JSONResponse:
    """``exc`` as a JSON error response; ``status`` overrides the class's (starlette's own)."""
    error = as_lorag_error(exc)
    mapped, error_type = http_status(error)
    status = status or mapped
    if status >= 500 and not isinstance(error, Unavailable):  # 503s are expected
        log.warning("%s: %s", type(error).__name__, error.message)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationFailed) else None
    if isinstance(error, RateLimited):
        headers = rate_limit_headers(error.windows, error.retry_after)
    return JSONResponse(error_body(error, error_type), status_code=status, headers=headers)


def rate_limit_headers(windows: dict, retry_after: float | None = None) -> dict[str, str]:
    """OpenAI's rate limit headers (``x-ratelimit-{limit,remaining,reset}-{requests,
    tokens}``) from a tenant's windows, with ``Retry-After`` (whole seconds, as HTTP
    says) and ``retry-after-ms`` (what OpenAI's clients read first) when given."""
    headers = {}
    for name, window in windows.items():
        headers[f"x-ratelimit-limit-{name}"] = str(window.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(window.remaining)
        headers[f"x-ratelimit-reset-{name}"] = _duration(window.reset_seconds)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's spelling of a reset time: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


def sse_error(exc: BaseException) -> str:
    """An error as one server-sent event, for failures after a stream has started."""
    error = as_lorag_error(exc)
    return f"data: {json.dumps(error_body(error, http_status(error)[1]))}\n\n"


@contextmanager
def params_renamed(**names: str) -> Iterator[None]:
    """Rename the ``param`` of a LoragError raised inside, from a service's name for a
    value to the request field that carried it (e.g. ``k`` -> ``top_k``)."""
    try:
        yield
    except LoragError as exc:
        exc.param = names.get(exc.param, exc.param) if exc.param else exc.param
        raise


def field_path(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    parts = list(loc[1:] if loc and loc[0] in _LOCATIONS else loc)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _TYPE_TAG.search(str(part)):
            path += f".{part}" if path else str(part)
    return path or (loc[0] if loc else None)


def validation_error(exc: RequestValidationError) -> ClientError:
    """FastAPI's 422 as a 400 that names the first offending field."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return ClientError(f"the body is not valid JSON: {first.get('msg')}", param="body",
                           code="invalid_json")
    param = field_path(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        message = "unrecognized field"
    return ClientError(f"{param}: {message}" if param else message, param=param,
                       code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    async def on_lorag_error(request: Request, exc: LoragError) -> JSONResponse:
        return error_response(exc)

    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413:  # raised by server.limits while the body is read
            return error_response(PayloadTooLarge(str(exc.detail), param="body"))
        # A 400 here is starlette refusing a malformed body (a broken multipart form).
        error = ClientError(str(exc.detail), code=_HTTP_CODES.get(exc.status_code, "invalid_request"),
                            param="body" if exc.status_code == 400 else None)
        return error_response(error, status=exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.add_exception_handler(LoragError, on_lorag_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
