"""The one exception tree of lorag.

Every error a caller can cause is a ``ClientError`` (4xx) and names the offending
parameter when there is one; everything else is a ``ServerError`` and, when it reaches a
client, is a bug or an outage. Nothing here knows HTTP: ``server/errors.py`` maps each
class to a status and builds the error body in one place; the CLI prints ``message``.
"""

from __future__ import annotations


class LoragError(Exception):
    """Base of all lorag errors. ``code`` is a stable, machine-readable reason."""

    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ClientError(LoragError):
    """The request is wrong; retrying it unchanged will fail again."""

    code = "invalid_request"


class InvalidInput(ClientError):
    """A value is malformed, out of range or inconsistent."""

    code = "invalid_value"


class NotFound(ClientError):
    """The thing does not exist, or belongs to another tenant (never revealed)."""

    code = "not_found"


class Conflict(ClientError):
    """The thing already exists, or the request races another change."""

    code = "conflict"


class AuthenticationFailed(ClientError):
    """Missing or unknown API key."""

    code = "invalid_api_key"


class PermissionDenied(ClientError):
    """The key is valid but may not do this."""

    code = "forbidden"


class PayloadTooLarge(ClientError):
    """A body, file or archive is over its configured limit."""

    code = "payload_too_large"


class RateLimited(ClientError):
    """The tenant is over one of its limits; the same request may succeed after
    ``retry_after`` seconds (None: not before the limit is raised). ``windows`` holds, per
    limited quantity (``requests``, ``tokens``), its (limit, remaining, seconds to full)."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None, param: str | None = None,
                 code: str | None = None,
                 windows: dict[str, tuple[int, int, float]] | None = None):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after
        self.windows = windows or {}


class QuotaExceeded(RateLimited):
    """A per-day or storage quota of the tenant is used up."""

    code = "insufficient_quota"


class UnknownName(InvalidInput):
    """A registry was asked for a name it does not hold."""

    code = "unknown_name"


class ServerError(LoragError):
    """lorag failed; the request may succeed later."""


class Unavailable(ServerError):
    """A component (engine, store) is not ready or is shutting down."""

    code = "unavailable"
