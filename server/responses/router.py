"""POST /v1/responses: OpenAI's Responses API where ``model`` is a brand and the
``file_search`` tool searches the tenant's vector stores; stored responses can be read,
deleted and continued (``previous_response_id``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from server.chat.serving import (STREAM_HEADERS, LimitedStream, admitted, cancel_on_disconnect,
                                 in_generation_slot)
from server.deps import AppMetrics, Lorag, TenantId
from server.errors import params_renamed, rate_limit_headers
from server.responses import schemas
from server.responses.serving import ResponseServing, to_request

router = APIRouter(tags=["responses"])
# ChatService's names for what a response request calls otherwise.
_RENAMED = {"messages": "input", "max_tokens": "max_output_tokens",
            "retrieval.top_k": "tools[0].max_num_results"}


@router.post(
    "/v1/responses", response_model=schemas.Response,
    responses={200: {"content": {"text/event-stream": {"description": "With `stream: true`: "
                     "`response.created`, ..., `response.output_text.delta`, ..., "
                     "`response.completed` events."}}},
               **schemas.error_responses(400, 401, 404, 409, 413, 429, 503)},
    summary="Answer as a brand; file_search grounds it in vector stores, with file citations")
async def create_response(body: schemas.ResponseCreate, request: Request, response: Response,
                          tenant: TenantId, lorag: Lorag, metrics: AppMetrics) -> Any:
    with params_renamed(**_RENAMED):
        ticket, prepared = await admitted(
            lorag, tenant, lambda: lorag.responses.prepare(tenant, to_request(body)),
            chat_of=lambda p: p.chat)
    serving = ResponseServing(lorag.responses, lorag.chat, metrics, body, prepared)
    if body.stream:
        return LimitedStream(ticket, serving, serving.events(),
                             headers={**STREAM_HEADERS, **rate_limit_headers(ticket.windows())})
    try:
        result = await cancel_on_disconnect(request, in_generation_slot(ticket, serving.complete()))
    finally:
        ticket.finish(*serving.token_counts())
    response.headers.update(rate_limit_headers(ticket.windows()))
    return result


@router.get("/v1/responses/{response_id}", response_model=schemas.Response,
            responses=schemas.error_responses(401, 404), summary="A stored response")
def retrieve_response(response_id: str, tenant: TenantId, lorag: Lorag) -> Any:
    return lorag.responses.get(tenant, response_id).body


@router.delete("/v1/responses/{response_id}", response_model=schemas.Deleted,
               responses=schemas.error_responses(401, 404), summary="Delete a stored response")
def delete_response(response_id: str, tenant: TenantId, lorag: Lorag) -> schemas.Deleted:
    lorag.responses.delete(tenant, response_id)
    return schemas.Deleted(id=response_id, object="response")
