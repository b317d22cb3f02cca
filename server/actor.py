"""Who is acting, for the audit log: ``admin`` for the admin key, ``key:<id>`` for a
tenant's key, ``anonymous`` otherwise. Set per request before any route runs (a pure
ASGI middleware, so the context variable reaches the route, sync or async)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from lorag.app.container import Lorag
from lorag.core.audit import acting_as


class Actor:
    def __init__(self, app: ASGIApp, lorag: Lorag):
        self.app = app
        self.lorag = lorag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with acting_as(self._actor(scope)):
            await self.app(scope, receive, send)

    def _actor(self, scope: Scope) -> str:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return "anonymous"
        admin = self.lorag.settings.server.admin_key
        if admin is not None and hmac.compare_digest(secret.encode("latin-1"),
                                                     admin.get_secret_value().encode()):
            return "admin"
        key_id = self.lorag.tenants.key_id(secret)
        return f"key:{key_id}" if key_id is not None else "anonymous"
