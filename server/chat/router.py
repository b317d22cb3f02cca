"""POST /v1/chat/completions: OpenAI's chat API where ``model`` is a brand.

The route translates the request for ``lorag.app.chat.ChatService`` (the orchestration)
and hands the prepared chat to ``server.chat.serving`` (the OpenAI response shapes).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from lorag.app.chat import ChatRequest, RetrievalOptions, StructuredOutput
from lorag.app.chat import structured_output as to_structured
from lorag.app.tools import Tool
from server.chat import schemas
from server.chat.serving import (STREAM_HEADERS, ChatServing, LimitedStream, RolloutReport,
                                 Timing, admitted, cancel_on_disconnect,
                                 in_generation_slot)
from server.deps import AppMetrics, Lorag, TenantId
from server.errors import rate_limit_headers

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/chat/completions", response_model=schemas.ChatCompletion,
    responses={200: {"content": {"text/event-stream": {"description": "With `stream: true`: "
                     "`data: <ChatCompletionChunk>` events, then `data: [DONE]`."}}},
               **schemas.error_responses(400, 401, 404, 409, 413, 429, 503)},
    summary="Answer as a brand, grounded in the tenant's documents, with citations")
async def create_chat_completion(body: schemas.ChatCompletionRequest, request: Request,
                                 response: Response, tenant: TenantId, lorag: Lorag,
                                 metrics: AppMetrics) -> Any:
    started = time.perf_counter()
    chat_request = to_chat_request(body)
    ticket, prepared = await admitted(lorag, tenant,
                                      lambda: lorag.chat.prepare(tenant, chat_request))
    timing = Timing(started, prepared=time.perf_counter())
    request.state.brand = prepared.brand  # labelled only once known to exist
    metrics.retrieval.labels(tenant, "chat").observe(prepared.retrieval_seconds)
    serving = ChatServing(lorag.chat, metrics, prepared, started)
    report = RolloutReport(lorag, serving, list(chat_request.messages), body.store, body.metadata)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return LimitedStream(ticket, serving, serving.events(include_usage),
                             headers={**STREAM_HEADERS, **rate_limit_headers(ticket.windows())},
                             background=BackgroundTask(report.after_stream))
    try:
        result = await cancel_on_disconnect(request, in_generation_slot(ticket, serving.complete(),
                                                                          timing))
    except Exception:
        await report.done(None)
        raise
    finally:
        ticket.finish(*serving.token_counts())
    response.headers.update(rate_limit_headers(ticket.windows()))
    if isinstance(result, schemas.ChatCompletion):
        timing.answered = time.perf_counter()
        await report.done(result)
        response.headers["Server-Timing"] = timing.header(serving)
    return result


def to_chat_request(body: schemas.ChatCompletionRequest) -> ChatRequest:
    retrieval = body.retrieval or schemas.RetrievalParams()
    return ChatRequest(
        brand=body.model,
        messages=[m.as_dict() for m in body.messages],
        max_tokens=body.max_tokens if body.max_tokens is not None else body.max_completion_tokens,
        temperature=body.temperature, top_p=body.top_p, stop=body.stops(), seed=body.seed,
        retrieval=RetrievalOptions(top_k=retrieval.top_k, mode=retrieval.mode,
                                   filters=retrieval.filters),
        routing_key=body.user or (body.metadata or {}).get("session_id"),
        n=body.n, logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        logit_bias=tuple((int(k), float(v)) for k, v in (body.logit_bias or {}).items()),
        response_format=structured_output(body.response_format),
        brand_format=body.response_format is None,  # {"type": "text"} turns the default off
        tools=tuple(Tool(t.function.name, t.function.description or "", t.function.parameters)
                    for t in body.tools or ()),
        tool_choice=(body.tool_choice.function.name
                     if isinstance(body.tool_choice, schemas.NamedToolChoice) else body.tool_choice))


def structured_output(response_format: schemas.ResponseFormat | None) -> StructuredOutput | None:
    """``json_object``: any JSON object; ``json_schema``: its schema (always strict)."""
    return to_structured(response_format.model_dump(by_alias=True) if response_format else None)
