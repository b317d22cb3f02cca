"""GET /v1/models: the caller's brands, as OpenAI models."""

from __future__ import annotations

from fastapi import APIRouter

from lorag.core.errors import NotFound
from server.deps import Lorag, TenantId
from server.models import schemas

router = APIRouter(tags=["chat"])


def to_model(brand) -> schemas.Model:
    return schemas.Model(id=brand.name, created=int(brand.created_at), owned_by=brand.tenant_id)


@router.get("/v1/models", response_model=schemas.ModelList,
            responses=schemas.error_responses(401), summary="The caller's brands")
def list_models(tenant: TenantId, lorag: Lorag) -> schemas.ModelList:
    return schemas.ModelList(data=[to_model(b) for b in lorag.brands.list(tenant)])


@router.get("/v1/models/{model}", response_model=schemas.Model,
            responses=schemas.error_responses(401, 404), summary="One of the caller's brands")
def get_model(model: str, tenant: TenantId, lorag: Lorag) -> schemas.Model:
    try:
        return to_model(lorag.brands.get(tenant, model))
    except NotFound:
        raise NotFound(f"model {model!r} not found", param="model") from None
