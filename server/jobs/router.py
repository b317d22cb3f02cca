"""GET /v1/jobs and /v1/jobs/{id}: the caller's ingestion (and training) jobs."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query

from server.deps import Lorag, TenantId
from server.jobs import schemas

router = APIRouter(tags=["documents"])


def to_job(job) -> schemas.Job:
    return schemas.Job(**asdict(job))


@router.get("/v1/jobs", response_model=schemas.JobList, responses=schemas.error_responses(400, 401),
            summary="The caller's most recent jobs")
def list_jobs(tenant: TenantId, lorag: Lorag,
              limit: int = Query(20, ge=1, le=100)) -> schemas.JobList:
    return schemas.JobList(data=[to_job(j) for j in lorag.jobs.list(tenant, limit)])


@router.get("/v1/jobs/{job_id}", response_model=schemas.Job,
            responses=schemas.error_responses(401, 404), summary="A job's status and progress")
def get_job(job_id: str, tenant: TenantId, lorag: Lorag) -> schemas.Job:
    return to_job(lorag.jobs.get(tenant, job_id))
