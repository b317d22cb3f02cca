"""What every admin router shares: the prefix, the admin key check, the error docs."""

from __future__ import annotations

from fastapi import APIRouter

from server import schemas
from server.deps import AdminOnly


def admin_router() -> APIRouter:
    return APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminOnly],
                     responses=schemas.error_responses(401, 403))
