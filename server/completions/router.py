"""POST /v1/completions: OpenAI's completions where ``model`` is a brand; the brand's
adapter continues the prompt as given. Retrieval is off unless the request asks for it
(lorag's ``retrieval`` extension)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from lorag.app.chat import ChatRequest, RetrievalOptions
from lorag.core.modes import RetrievalMode
from server.chat.serving import (STREAM_HEADERS, LimitedStream, admitted, cancel_on_disconnect,
                                 in_generation_slot)
from server.completions import schemas
from server.completions.serving import CompletionServing
from server.deps import AppMetrics, Lorag, TenantId
from server.errors import rate_limit_headers

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/completions", response_model=schemas.Completion,
    responses={200: {"content": {"text/event-stream": {"description": "With `stream: true`: "
                     "`data: <Completion>` events, then `data: [DONE]`."}}},
               **schemas.error_responses(400, 401, 404, 409, 413, 429, 503)},
    summary="Complete a raw prompt with a brand's adapter")
async def create_completion(body: schemas.CompletionRequest, request: Request,
                            response: Response, tenant: TenantId, lorag: Lorag, metrics: AppMetrics) -> Any:
    started = time.perf_counter()
    ticket, prepared = await admitted(
        lorag, tenant, lambda: lorag.chat.prepare_completion(tenant, to_chat_request(body)))
    request.state.brand = prepared.brand
    metrics.retrieval.labels(tenant, "completion").observe(prepared.retrieval_seconds)
    serving = CompletionServing(lorag.chat, metrics, prepared, started, echo=body.echo,
                                prompt=body.text(), top_logprobs=body.logprobs)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return LimitedStream(ticket, serving, serving.completion_events(include_usage),
                             headers={**STREAM_HEADERS, **rate_limit_headers(ticket.windows())})
    try:
        result = await cancel_on_disconnect(request,
                                            in_generation_slot(ticket, serving.completion()))
    finally:
        ticket.finish(*serving.token_counts())
    response.headers.update(rate_limit_headers(ticket.windows()))
    return result


def to_chat_request(body: schemas.CompletionRequest) -> ChatRequest:
    # off unless asked: given without a mode, the brand's mode
    retrieval = body.retrieval or schemas.RetrievalParams(mode=RetrievalMode.OFF)
    return ChatRequest(
        brand=body.model, messages=[{"role": "user", "content": body.text()}],
        max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
        stop=body.stops(), seed=body.seed, n=body.n,
        retrieval=RetrievalOptions(top_k=retrieval.top_k,
                                   mode=retrieval.mode,
                                   filters=retrieval.filters),
        routing_key=body.user, logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs or 0, presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=tuple((int(k), float(v)) for k, v in (body.logit_bias or {}).items()),
        request_id=f"cmpl-{uuid.uuid4().hex}")
