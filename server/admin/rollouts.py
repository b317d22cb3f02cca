"""Admin: adapter aliases and promotion (through the gates), brands' splits, shadow and
rollback, brands' evaluation sets (the answer gate's questions), the per-target readout,
and the audit log."""

from __future__ import annotations

import asyncio

from fastapi import Path as PathParam, Query, Request

from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag
from server.schemas import Deleted

router = admin_router()

EVALUATION_SET_BODY = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {
    "type": "string", "description": "JSON Lines, one question a line: "
    '`{"question": "...", "reference": "...", "gold_ids": ["doc"]}` (`reference`, `gold_ids` '
    "and `id` optional), the format of `lorag eval chat`; also sent as "
    "`application/x-ndjson`."}}}}}


@router.get("/tenants/{tenant}/adapters/{name}/aliases", response_model=schemas.Aliases,
            responses=schemas.error_responses(404), summary="An adapter's aliases")
def get_aliases(tenant: str, name: str, lorag: Lorag) -> schemas.Aliases:
    lorag.adapters.get(tenant, name)
    return schemas.Aliases(adapter=name, aliases=lorag.adapters.aliases(tenant, name))


@router.put("/tenants/{tenant}/adapters/{name}/aliases/{alias}",
            response_model=schemas.PromotionResult,
            responses=schemas.error_responses(400, 404, 409, 413),
            summary="Point an alias at a version (to `stable` only through the gates)")
def promote(tenant: str, name: str, alias: str, body: schemas.Promotion,
            lorag: Lorag) -> schemas.PromotionResult:
    return schemas.PromotionResult(**lorag.rollouts.promote(tenant, name, body.version,
                                                            alias=alias, force=body.force))


@router.delete("/tenants/{tenant}/adapters/{name}/aliases/{alias}", response_model=schemas.Aliases,
               responses=schemas.error_responses(404), summary="Remove an alias")
def remove_alias(tenant: str, name: str, alias: str, lorag: Lorag) -> schemas.Aliases:
    lorag.adapters.remove_alias(tenant, name, alias)
    return schemas.Aliases(adapter=name, aliases=lorag.adapters.aliases(tenant, name))


@router.get("/tenants/{tenant}/adapters/{name}/versions/{version}/gates",
            response_model=schemas.Gates, responses=schemas.error_responses(400, 404),
            summary="The promotion gates a version passes or fails")
def gates(tenant: str, name: str, lorag: Lorag,
          version: int = PathParam(ge=1, le=2**62)) -> schemas.Gates:
    results = lorag.rollouts.gates(tenant, name, version)
    return schemas.Gates(version=version, gates=[g.to_dict() for g in results])


@router.put("/tenants/{tenant}/brands/{brand}/split", response_model=schemas.Brand,
            responses=schemas.error_responses(400, 404, 413), summary="Split a brand's traffic")
def set_split(tenant: str, brand: str, body: schemas.SplitUpdate, lorag: Lorag) -> schemas.Brand:
    arms = [arm.model_dump() for arm in body.split]
    return schemas.Brand(**lorag.rollouts.set_split(tenant, brand, arms).to_dict())


@router.put("/tenants/{tenant}/brands/{brand}/shadow", response_model=schemas.Brand,
            responses=schemas.error_responses(400, 404, 413), summary="Set or stop a shadow target")
def set_shadow(tenant: str, brand: str, body: schemas.ShadowUpdate, lorag: Lorag) -> schemas.Brand:
    shadow = body.shadow.model_dump() if body.shadow else None
    return schemas.Brand(**lorag.rollouts.set_shadow(tenant, brand, shadow).to_dict())


@router.post("/tenants/{tenant}/brands/{brand}/rollback", response_model=schemas.Brand,
             responses=schemas.error_responses(400, 404, 413),
             summary="Take a target (or all) out of a brand's split")
def rollback(tenant: str, brand: str, body: schemas.Rollback, lorag: Lorag) -> schemas.Brand:
    return schemas.Brand(**lorag.rollouts.rollback(tenant, brand, body.target).to_dict())


@router.get("/tenants/{tenant}/brands/{brand}/rollout", response_model=schemas.RolloutReadout,
            responses=schemas.error_responses(404), summary="Per-target readout of a brand")
def readout(tenant: str, brand: str, lorag: Lorag) -> schemas.RolloutReadout:
    return schemas.RolloutReadout(**lorag.rollouts.readout(tenant, brand))


@router.put("/tenants/{tenant}/brands/{brand}/evaluation", response_model=schemas.EvaluationSet,
            responses=schemas.error_responses(400, 404, 413), openapi_extra=EVALUATION_SET_BODY,
            summary="Put a brand's evaluation set (the answer gate's questions), validated line "
                    "by line: a bad line is a 400 naming it and its field (`line N: field`)")
async def put_evaluation_set(tenant: str, brand: str, request: Request,
                             lorag: Lorag) -> schemas.EvaluationSet:
    data = await request.body()
    found = await asyncio.to_thread(lorag.evaluation_sets.put, tenant, brand, data)
    return schemas.EvaluationSet(**found.to_dict())


@router.get("/tenants/{tenant}/brands/{brand}/evaluation", response_model=schemas.EvaluationSet,
            responses=schemas.error_responses(404), summary="A brand's evaluation set")
def get_evaluation_set(tenant: str, brand: str, lorag: Lorag) -> schemas.EvaluationSet:
    return schemas.EvaluationSet(**lorag.evaluation_sets.get(tenant, brand).to_dict())


@router.delete("/tenants/{tenant}/brands/{brand}/evaluation", response_model=Deleted,
               responses=schemas.error_responses(404),
               summary="Delete a brand's evaluation set (its answer gate then does not apply)")
def delete_evaluation_set(tenant: str, brand: str, lorag: Lorag) -> Deleted:
    lorag.evaluation_sets.delete(tenant, brand)
    return Deleted(id=brand, object="evaluation.set")


@router.get("/tenants/{tenant}/audit", response_model=schemas.AuditList,
            responses=schemas.error_responses(400, 404), summary="A tenant's audit records")
def tenant_audit(tenant: str, lorag: Lorag, after: int = Query(0, ge=0, le=2**62),
                 limit: int = Query(100, ge=1, le=1000)) -> schemas.AuditList:
    lorag.tenants.get(tenant)
    records = lorag.audit.list(tenant, after_seq=after, limit=limit)
    return schemas.AuditList(data=[schemas.AuditRecord(**r.to_dict()) for r in records])


@router.get("/audit/verify", response_model=schemas.AuditVerification,
            summary="Check the whole audit log's hash chain")
def verify_audit(lorag: Lorag) -> schemas.AuditVerification:
    return schemas.AuditVerification(**lorag.audit.verify().to_dict())
