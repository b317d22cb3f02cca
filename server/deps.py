"""Dependencies of the routes, declared once as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lorag.app.container import Lorag as Container
from lorag.core.errors import AuthenticationFailed, PermissionDenied
from server.metrics import Metrics
from server.tasks import Tasks

_tenant_key = HTTPBearer(auto_error=False, scheme_name="TenantKey",
                         description="A tenant's API key (`lrg-...`).")
_admin_key = HTTPBearer(auto_error=False, scheme_name="AdminKey",
                        description="The admin key (LORAG_SERVER__ADMIN_KEY).")
Credentials = HTTPAuthorizationCredentials | None


def get_lorag(request: Request) -> Container:
    return request.app.state.lorag


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_tasks(request: Request) -> Tasks:
    return request.app.state.tasks


Lorag = Annotated[Container, Depends(get_lorag)]
AppMetrics = Annotated[Metrics, Depends(get_metrics)]
AppTasks = Annotated[Tasks, Depends(get_tasks)]


def authenticate_tenant(request: Request, lorag: Lorag,
                        credentials: Annotated[Credentials, Depends(_tenant_key)]) -> str:
    """The tenant owning the bearer key; 401 when it is missing or unknown."""
    tenant_id = lorag.tenants.authenticate(credentials.credentials if credentials else None)
    request.state.tenant = tenant_id
    return tenant_id


TenantId = Annotated[str, Depends(authenticate_tenant)]


def require_admin(lorag: Lorag, credentials: Annotated[Credentials, Depends(_admin_key)]) -> None:
    """401 without a key or with an unknown one, 403 with a tenant's key or when no
    admin key is configured; the admin key is compared in constant time."""
    if credentials is None:
        raise AuthenticationFailed("missing admin key (Authorization: Bearer <admin key>)")
    secret = credentials.credentials
    admin = lorag.settings.server.admin_key
    if admin is not None and hmac.compare_digest(secret.encode(),
                                                 admin.get_secret_value().encode()):
        return
    try:
        lorag.tenants.authenticate(secret)
    except AuthenticationFailed:
        raise AuthenticationFailed("invalid admin key") from None
    raise PermissionDenied("a tenant key may not use the admin API")


AdminOnly = Depends(require_admin)
