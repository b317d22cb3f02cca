"""POST /v1/search: retrieval only, over the caller's documents."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict

from fastapi import APIRouter

from server.deps import AppMetrics, Lorag, TenantId
from server.errors import params_renamed
from server.search import schemas

router = APIRouter(tags=["documents"])


@router.post("/v1/search", response_model=schemas.SearchResponse,
             responses=schemas.error_responses(400, 401, 409, 413),
             summary="Search the caller's documents")
async def search(body: schemas.SearchRequest, tenant: TenantId, lorag: Lorag,
                 metrics: AppMetrics) -> schemas.SearchResponse:
    started = time.perf_counter()
    with params_renamed(k="top_k"):
        hits = await asyncio.to_thread(lorag.retrieval.search, tenant, body.query, k=body.top_k,
                                       mode=body.mode, filters=body.filters,
                                       document_ids=body.document_ids)
    metrics.retrieval.labels(tenant, "search").observe(time.perf_counter() - started)
    return schemas.SearchResponse(data=[schemas.SearchResult(**asdict(h)) for h in hits])
