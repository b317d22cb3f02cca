"""Admin: LoRA training runs as jobs; the result is registered as an adapter version."""

from __future__ import annotations

import asyncio

from fastapi import Query, status

from adapters.training.spec import TrainSpec
from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag
from server.jobs.router import to_job

router = admin_router()


@router.post("/tenants/{tenant}/training", status_code=status.HTTP_202_ACCEPTED,
             response_model=schemas.Job, responses=schemas.error_responses(400, 404, 413),
             summary="Start training an adapter; poll the job")
async def start_training(tenant: str, body: schemas.TrainingCreate, lorag: Lorag) -> schemas.Job:
    lorag.tenants.get(tenant)
    spec = TrainSpec.parse(**body.model_dump(exclude_none=True), progress=False)
    job_id = await asyncio.to_thread(lorag.trainer.start, tenant, spec)
    return to_job(lorag.jobs.get(tenant, job_id))


@router.get("/tenants/{tenant}/jobs", response_model=schemas.JobList,
            responses=schemas.error_responses(400, 404), summary="A tenant's recent jobs")
def list_tenant_jobs(tenant: str, lorag: Lorag,
                     limit: int = Query(20, ge=1, le=100)) -> schemas.JobList:
    lorag.tenants.get(tenant)
    return schemas.JobList(data=[to_job(j) for j in lorag.jobs.list(tenant, limit)])


@router.get("/tenants/{tenant}/jobs/{job_id}", response_model=schemas.Job,
            responses=schemas.error_responses(404), summary="One job of a tenant")
def get_tenant_job(tenant: str, job_id: str, lorag: Lorag) -> schemas.Job:
    return to_job(lorag.jobs.get(tenant, job_id))
