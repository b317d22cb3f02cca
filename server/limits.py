"""Request body size limits, enforced before and while a body is read (pure ASGI, so
streaming responses and client-disconnect detection are untouched)."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorag.core.errors import PayloadTooLarge
from server.errors import error_response


class BodyLimit:
    """413 for a body over the limit of its path: at once when Content-Length says so,
    else as soon as the bytes read pass it (chunked uploads)."""

    def __init__(self, app: ASGIApp, default: int, per_path: list[tuple[str, int]] = ()):
        self.app = app
        self.default = default
        self.per_path = [(re.compile(pattern), limit) for pattern, limit in per_path]

    def limit(self, path: str) -> int:
        return next((limit for pattern, limit in self.per_path if pattern.fullmatch(path)),
                    self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            error = PayloadTooLarge(f"the request body is over the limit of {limit} bytes",
                                    param="body")
            return await error_response(error)(scope, receive, send)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # An HTTPException passes FastAPI's body parsing unchanged; errors.py maps it.
                raise HTTPException(413, f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)
