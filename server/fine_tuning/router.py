"""OpenAI's fine-tuning jobs on the caller's tenant: a job trains a LoRA adapter on an
uploaded file and registers it; its ``fine_tuned_model`` answers as ``model`` in chat."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

from lorag.core.pages import Order, PageRequest
from server.deps import Lorag, TenantId
from server.fine_tuning import schemas
from server.fine_tuning.serving import checkpoints, events, page_after, to_job, to_request

router = APIRouter(tags=["fine-tuning"])


@router.post("/v1/fine_tuning/jobs", response_model=schemas.FineTuningJob,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="Train an adapter on an uploaded file (a job)")
async def create_fine_tuning_job(body: schemas.FineTuningJobCreate, tenant: TenantId,
                                 lorag: Lorag) -> schemas.FineTuningJob:
    view = await asyncio.to_thread(lorag.fine_tuning.create, tenant, to_request(body))
    return to_job(view)


@router.get("/v1/fine_tuning/jobs", response_model=schemas.FineTuningJobList,
            responses=schemas.error_responses(400, 401, 404),
            summary="The caller's fine-tuning jobs, newest first")
def list_fine_tuning_jobs(tenant: TenantId, lorag: Lorag, limit: int = Query(20, ge=1, le=100),
                          after: str | None = Query(None, max_length=100)) -> schemas.FineTuningJobList:
    views, more = lorag.fine_tuning.list(tenant, PageRequest(limit, Order.DESC, after))
    return schemas.FineTuningJobList(data=[to_job(v) for v in views], has_more=more)


@router.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}", response_model=schemas.FineTuningJob,
            responses=schemas.error_responses(401, 404), summary="One fine-tuning job")
def retrieve_fine_tuning_job(fine_tuning_job_id: str, tenant: TenantId,
                             lorag: Lorag) -> schemas.FineTuningJob:
    return to_job(lorag.fine_tuning.view(tenant, fine_tuning_job_id))


@router.post("/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
             response_model=schemas.FineTuningJob, responses=schemas.error_responses(400, 401, 404),
             summary="Cancel a queued or running job")
def cancel_fine_tuning_job(fine_tuning_job_id: str, tenant: TenantId,
                           lorag: Lorag) -> schemas.FineTuningJob:
    return to_job(lorag.fine_tuning.cancel(tenant, fine_tuning_job_id))


@router.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
            response_model=schemas.FineTuningEventList,
            responses=schemas.error_responses(400, 401, 404), summary="A job's events, newest first")
def list_fine_tuning_events(fine_tuning_job_id: str, tenant: TenantId, lorag: Lorag,
                            limit: int = Query(20, ge=1, le=100),
                            after: str | None = Query(None, max_length=100)) -> schemas.FineTuningEventList:
    found = events(lorag.fine_tuning.view(tenant, fine_tuning_job_id))
    data, more = page_after(found, after, limit)
    return schemas.FineTuningEventList(data=data, has_more=more)


@router.get("/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
            response_model=schemas.CheckpointList, responses=schemas.error_responses(400, 401, 404),
            summary="The job's registered adapter version, as its checkpoint")
def list_fine_tuning_checkpoints(fine_tuning_job_id: str, tenant: TenantId, lorag: Lorag,
                                 limit: int = Query(20, ge=1, le=100),
                                 after: str | None = Query(None, max_length=100)) -> schemas.CheckpointList:
    found = checkpoints(lorag.fine_tuning.view(tenant, fine_tuning_job_id))
    data, more = page_after(found, after, limit)
    return schemas.CheckpointList(data=data, first_id=data[0].id if data else None,
                                  last_id=data[-1].id if data else None, has_more=more)
