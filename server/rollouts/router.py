"""A tenant's own view of its rollouts: the per-target readout of a brand and the
tenant's audit records (another tenant's are never visible)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from server.admin import schemas
from server.deps import Lorag, TenantId

router = APIRouter(tags=["rollouts"])


@router.get("/v1/rollouts/{brand}", response_model=schemas.RolloutReadout,
            responses=schemas.error_responses(401, 404),
            summary="Requests, errors, latency, tokens and feedback per target of a brand")
def readout(brand: str, tenant: TenantId, lorag: Lorag) -> schemas.RolloutReadout:
    return schemas.RolloutReadout(**lorag.rollouts.readout(tenant, brand))


@router.get("/v1/audit", response_model=schemas.AuditList,
            responses=schemas.error_responses(400, 401),
            summary="The tenant's audit records: brand, alias, split, promotion, rollback, key")
def audit(tenant: TenantId, lorag: Lorag, after: int = Query(0, ge=0, le=2**62),
          limit: int = Query(100, ge=1, le=1000)) -> schemas.AuditList:
    records = lorag.audit.list(tenant, after_seq=after, limit=limit)
    return schemas.AuditList(data=[schemas.AuditRecord(**r.to_dict()) for r in records])
