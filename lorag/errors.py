"""The one exception tree of lorag.

Every error a caller can cause is a ``ClientError`` (4xx) and names the offending
parameter when there is one; everything else is a ``ServerError`` (5xx) and, when it
reaches a client, is a bug or an outage. ``server/`` maps this tree to HTTP in one
place; the CLI prints ``message``.
"""

from __future__ import annotations


class LoragError(Exception):
    """Base of all lorag errors."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        """The OpenAI-shaped error body: ``{"error": {message, type, param, code}}``."""
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class ClientError(LoragError):
    """The request is wrong; retrying it unchanged will fail again."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidInput(ClientError):
    """A value is malformed, out of range or inconsistent."""

    code = "invalid_value"


class NotFound(ClientError):
    """The thing does not exist, or belongs to another tenant (never revealed)."""

    status = 404
    code = "not_found"


class Conflict(ClientError):
    """The thing already exists, or the request races another change."""

    status = 409
    code = "conflict"


class AuthenticationFailed(ClientError):
    """Missing or unknown API key."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    """The key is valid but may not do this."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class PayloadTooLarge(ClientError):
    """A body, file or archive is over its configured limit."""

    status = 413
    code = "payload_too_large"


class UnknownName(InvalidInput):
    """A registry was asked for a name it does not hold."""

    code = "unknown_name"


class ServerError(LoragError):
    """lorag failed; the request may succeed later."""


class Unavailable(ServerError):
    """A component (engine, store) is not ready or is shutting down."""

    status = 503
    code = "unavailable"
