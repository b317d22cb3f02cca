"""Admin: a tenant's brands (adapter, system prompt, retrieval defaults)."""

from __future__ import annotations

from fastapi import status

from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag
from server.errors import params_renamed

router = admin_router()

# BrandStore names values as it stores them; the request nests retrieval options.
BRAND_FIELDS = dict(brand="name", top_k="retrieval.top_k", mode="retrieval.mode",
                    filters="retrieval.filters")


def to_brand(brand) -> schemas.Brand:
    return schemas.Brand(**brand.to_dict())


@router.post("/tenants/{tenant}/brands", status_code=status.HTTP_201_CREATED,
             response_model=schemas.Brand, responses=schemas.error_responses(400, 404, 409, 413),
             summary="Create a brand")
def create_brand(tenant: str, body: schemas.BrandCreate, lorag: Lorag) -> schemas.Brand:
    lorag.tenants.get(tenant)
    with params_renamed(**BRAND_FIELDS):
        brand = lorag.brands.create(tenant, body.name, adapter=body.adapter,
                                    system_prompt=body.system_prompt, store=body.store,
                                    **body.retrieval.model_dump(),
                                    quality=body.quality.model_dump() if body.quality else None,
                                    response_format=body.response_format)
    return to_brand(brand)


@router.get("/tenants/{tenant}/brands", response_model=schemas.BrandList,
            responses=schemas.error_responses(404), summary="A tenant's brands")
def list_brands(tenant: str, lorag: Lorag) -> schemas.BrandList:
    lorag.tenants.get(tenant)
    return schemas.BrandList(data=[to_brand(b) for b in lorag.brands.list(tenant)])


@router.get("/tenants/{tenant}/brands/{name}", response_model=schemas.Brand,
            responses=schemas.error_responses(404), summary="One brand")
def get_brand(tenant: str, name: str, lorag: Lorag) -> schemas.Brand:
    return to_brand(lorag.brands.get(tenant, name))


@router.patch("/tenants/{tenant}/brands/{name}", response_model=schemas.Brand,
              responses=schemas.error_responses(400, 404, 413), summary="Change a brand")
def update_brand(tenant: str, name: str, body: schemas.BrandUpdate, lorag: Lorag) -> schemas.Brand:
    changes = body.model_dump(include=body.model_fields_set - {"retrieval"})
    if body.retrieval is not None:
        changes |= body.retrieval.model_dump(include=body.retrieval.model_fields_set)
    if "quality" in changes and body.quality is None:
        changes["quality"] = None  # null: the default checks
    if changes.get("system_prompt", "") is None:
        changes["system_prompt"] = ""
    with params_renamed(**BRAND_FIELDS):
        return to_brand(lorag.brands.update(tenant, name, **changes))


@router.delete("/tenants/{tenant}/brands/{name}", response_model=schemas.Deleted,
               responses=schemas.error_responses(404), summary="Delete a brand (its adapter stays)")
def delete_brand(tenant: str, name: str, lorag: Lorag) -> schemas.Deleted:
    lorag.brands.delete(tenant, name)
    return schemas.Deleted(id=name, object="brand")
