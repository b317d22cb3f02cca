"""Admin: a tenant's limits (defaults, overrides, what applies) and its usage."""

from __future__ import annotations

import re

from fastapi import Query

from lorag.app.limits import LimitView
from lorag.core.errors import InvalidInput
from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag

router = admin_router()
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def to_limits(view: LimitView, lorag: Lorag) -> schemas.Limits:
    return schemas.Limits(tenant=view.tenant_id, defaults=view.defaults.model_dump(),
                          overrides=view.overrides, effective=view.effective.model_dump(),
                          active_generations=lorag.limits.active().get(view.tenant_id, 0))


@router.get("/tenants/{tenant}/limits", response_model=schemas.Limits,
            responses=schemas.error_responses(404), summary="A tenant's limits")
def get_limits(tenant: str, lorag: Lorag) -> schemas.Limits:
    return to_limits(lorag.limits.view(tenant), lorag)


@router.patch("/tenants/{tenant}/limits", response_model=schemas.Limits,
              responses=schemas.error_responses(400, 404, 413),
              summary="Set or remove a tenant's limit overrides (applies at once)")
def update_limits(tenant: str, body: schemas.LimitsUpdate, lorag: Lorag) -> schemas.Limits:
    return to_limits(lorag.limits.set_overrides(tenant, body.model_dump(exclude_unset=True)), lorag)


@router.delete("/tenants/{tenant}/limits", response_model=schemas.Limits,
               responses=schemas.error_responses(404),
               summary="Remove all of a tenant's overrides (the defaults apply)")
def reset_limits(tenant: str, lorag: Lorag) -> schemas.Limits:
    return to_limits(lorag.limits.set_overrides(tenant, {}, replace=True), lorag)


@router.get("/tenants/{tenant}/usage", response_model=schemas.Usage,
            responses=schemas.error_responses(400, 404),
            summary="A tenant's usage: chat requests and tokens, ingested documents and bytes")
def get_usage(tenant: str, lorag: Lorag,
              day: str | None = Query(None, description="A UTC day, YYYY-MM-DD; "
                                      "none: all days")) -> schemas.Usage:
    if day is not None and not _DAY.fullmatch(day):
        raise InvalidInput("day must be a UTC day as YYYY-MM-DD", param="day")
    usage = lorag.limits.usage(tenant, day)
    return schemas.Usage(tenant=tenant, day=usage.day, **{
        name: getattr(usage, name) for name in ("requests", "prompt_tokens", "completion_tokens",
                                                "documents", "bytes")})
