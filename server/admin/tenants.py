"""Admin: tenants and their API keys (a key is returned once, stored hashed)."""

from __future__ import annotations

from fastapi import Path as PathParam, status

from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag

router = admin_router()


def to_tenant(tenant) -> schemas.Tenant:
    return schemas.Tenant(id=tenant.id, display_name=tenant.display_name,
                          created_at=tenant.created_at)


def to_key(key) -> schemas.IssuedKey:
    return schemas.IssuedKey(id=key.id, tenant=key.tenant_id, api_key=key.secret, hint=key.hint)


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=schemas.TenantCreated,
             responses=schemas.error_responses(400, 409, 413),
             summary="Create a tenant and its first key")
def create_tenant(body: schemas.TenantCreate, lorag: Lorag) -> schemas.TenantCreated:
    tenant = lorag.tenants.create(body.id, body.display_name)
    return schemas.TenantCreated(tenant=to_tenant(tenant), key=to_key(lorag.tenants.issue_key(tenant.id)))


@router.get("/tenants", response_model=schemas.TenantList, summary="All tenants")
def list_tenants(lorag: Lorag) -> schemas.TenantList:
    return schemas.TenantList(data=[to_tenant(t) for t in lorag.tenants.list()])


@router.get("/tenants/{tenant}", response_model=schemas.Tenant,
            responses=schemas.error_responses(404), summary="One tenant")
def get_tenant(tenant: str, lorag: Lorag) -> schemas.Tenant:
    return to_tenant(lorag.tenants.get(tenant))


@router.delete("/tenants/{tenant}", response_model=schemas.Deleted,
               responses=schemas.error_responses(404),
               summary="Delete a tenant with its keys, brands, documents, index and adapters")
def delete_tenant(tenant: str, lorag: Lorag) -> schemas.Deleted:
    lorag.tenants.delete(tenant)
    return schemas.Deleted(id=tenant, object="tenant")


@router.post("/tenants/{tenant}/keys", status_code=status.HTTP_201_CREATED,
             response_model=schemas.IssuedKey, responses=schemas.error_responses(404),
             summary="Issue another API key (shown once)")
def issue_key(tenant: str, lorag: Lorag) -> schemas.IssuedKey:
    return to_key(lorag.tenants.issue_key(tenant))


@router.get("/tenants/{tenant}/keys", response_model=schemas.ApiKeyList,
            responses=schemas.error_responses(404), summary="A tenant's keys (hints only)")
def list_keys(tenant: str, lorag: Lorag) -> schemas.ApiKeyList:
    lorag.tenants.get(tenant)
    return schemas.ApiKeyList(data=[schemas.ApiKey(**k) for k in lorag.tenants.list_keys(tenant)])


@router.delete("/tenants/{tenant}/keys/{key_id}", response_model=schemas.Deleted,
               responses=schemas.error_responses(400, 404), summary="Revoke a key")
def revoke_key(tenant: str, lorag: Lorag,
               key_id: int = PathParam(ge=1, le=2**62)) -> schemas.Deleted:
    lorag.tenants.revoke_key(tenant, key_id)
    return schemas.Deleted(id=str(key_id), object="api_key")
