"""A prepared response as OpenAI shapes it: one response object, or the stream of
``response.*`` events the official client's ``responses.stream`` accumulates."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, AsyncIterator

from lorag.app.chat import ChatService, usage_of
from lorag.app.responses import (FileCitation, FileSearch, PreparedResponse, ResponseRequest,
                                 ResponseService, file_citations)
from lorag.core.errors import InvalidInput
from server.errors import sse_error
from server.metrics import Metrics
from server.responses import schemas

DEVELOPER = "developer"  # OpenAI's name for a system message


def to_request(body: schemas.ResponseCreate) -> ResponseRequest:
    """The request for ``ResponseService``; raises InvalidInput for what lorag refuses."""
    searching = bool(body.tools) and body.tool_choice != "none"
    if not body.tools and (body.tool_choice == "required" or
                           isinstance(body.tool_choice, schemas.ToolChoiceFileSearch)):
        raise InvalidInput("tool_choice asks for file_search but tools has none",
                           param="tool_choice")
    tool = body.tools[0] if searching else None
    return ResponseRequest(
        model=body.model, input=_messages(body.input), instructions=body.instructions,
        file_search=FileSearch(tuple(tool.vector_store_ids), tool.filters, tool.max_num_results)
        if tool else None,
        previous_response_id=body.previous_response_id, max_output_tokens=body.max_output_tokens,
        temperature=body.temperature, top_p=body.top_p, routing_key=body.user)


def _messages(value: str | list[schemas.InputMessage]) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not value:
        raise InvalidInput("input must hold at least one message", param="input")
    messages = []
    for message in value:
        content = message.content if isinstance(message.content, str) else \
            "".join(part.text for part in message.content)
        role = "system" if message.role == DEVELOPER else message.role
        messages.append({"role": role, "content": content})
    return messages


class ResponseServing:
    """One prepared response as a response object or as events; stores it when asked."""

    def __init__(self, service: ResponseService, chat: ChatService, metrics: Metrics,
                 body: schemas.ResponseCreate, prepared: PreparedResponse):
        self.service, self.chat, self.metrics = service, chat, metrics
        self.body, self.prepared = body, prepared
        self.created = int(prepared.created_at)
        self.search_id = f"fs_{uuid.uuid4().hex}"
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self.sequence = 0
        self.last: Any = None  # the engine's last chunk, for usage and the tenant's limits

    async def complete(self) -> dict:
        parts, last = [], None
        async for chunk in self.chat.generate(self.prepared.chat, whole=True):
            parts.append(chunk.text)
            last = self.last = chunk
        text, _ = await self.chat.check(self.prepared.chat, "".join(parts), streamed=False)
        return await self._finish(text, last)

    async def events(self) -> AsyncIterator[str]:
        """created, in_progress, the file_search_call item, the message item with its
        text deltas and annotations, completed."""
        try:
            snapshot = self.response("in_progress", [], None)
            yield self._event("response.created", response=snapshot)
            yield self._event("response.in_progress", response=snapshot)
            index = 0
            if self.prepared.query is not None:
                async for event in self._search_events():
                    yield event
                index = 1
            async for event in self._message_events(index):
                yield event
        except Exception as exc:  # headers are sent: the error becomes an event
            yield sse_error(exc)

    async def _search_events(self) -> AsyncIterator[str]:
        ids = {"output_index": 0, "item_id": self.search_id}
        yield self._event("response.output_item.added", output_index=0,
                          item={**self._search_item(), "status": "in_progress", "results": None})
        for step in ("in_progress", "searching", "completed"):
            yield self._event(f"response.file_search_call.{step}", **ids)
        yield self._event("response.output_item.done", output_index=0, item=self._search_item())

    async def _message_events(self, index: int) -> AsyncIterator[str]:
        ids = {"item_id": self.message_id, "output_index": index, "content_index": 0}
        yield self._event("response.output_item.added", output_index=index, item={
            "type": "message", "id": self.message_id, "status": "in_progress",
            "role": "assistant", "content": []})
        yield self._event("response.content_part.added", **ids, part=_text_part("", []))
        prepared = self.prepared.chat
        redactor = self.chat.checks.stream_redactor(prepared.tenant_id, prepared.quality) \
            if self.chat.checks else None
        sent, last = [], None
        async for chunk in self.chat.generate(prepared):
            last = self.last = chunk
            text = redactor.feed(chunk.text) if redactor else chunk.text
            if text:
                sent.append(text)
                yield self._event("response.output_text.delta", **ids, delta=text, logprobs=[])
        if redactor and (rest := redactor.flush()):
            sent.append(rest)
            yield self._event("response.output_text.delta", **ids, delta=rest, logprobs=[])
        text = "".join(sent)
        await self.chat.check(prepared, text, streamed=True)
        annotations = self._annotations(text)
        for i, annotation in enumerate(annotations):
            yield self._event("response.output_text.annotation.added", **ids, annotation_index=i,
                              annotation=annotation)
        yield self._event("response.output_text.done", **ids, text=text, logprobs=[])
        yield self._event("response.content_part.done", **ids, part=_text_part(text, annotations))
        body = await self._finish(text, last)
        yield self._event("response.output_item.done", output_index=index,
                          item=body["output"][index])
        yield self._event("response.completed", response=body)

    def token_counts(self) -> tuple[int, int]:
        """(prompt, completion) tokens so far, for the tenant's limits and usage."""
        usage = usage_of(self.prepared.chat, self.last)
        return usage.prompt_tokens, usage.completion_tokens

    async def _finish(self, text: str, last: Any) -> dict:
        """The whole response object; stored when the request says so."""
        usage = usage_of(self.prepared.chat, last)
        self.metrics.observe_chat(self.prepared.chat.tenant_id, self.prepared.chat.brand,
                                  usage.prompt_tokens, usage.completion_tokens)
        incomplete = last is not None and last.finish_reason == "length"
        output = ([self._search_item()] if self.prepared.query is not None else []) + [{
            "type": "message", "id": self.message_id, "status": "completed", "role": "assistant",
            "content": [_text_part(text, self._annotations(text))]}]
        body = self.response("incomplete" if incomplete else "completed", output, {
            "input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": usage.total_tokens})
        if incomplete:
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        if self.body.store:
            await asyncio.to_thread(self.service.save, self.prepared, text, body)
        return body

    def response(self, status: str, output: list[dict], usage: dict | None) -> dict:
        body = self.body
        return schemas.Response(
            id=self.prepared.request.id, created_at=self.created, status=status,
            instructions=body.instructions, max_output_tokens=body.max_output_tokens,
            model=body.model, output=output, previous_response_id=body.previous_response_id,
            store=body.store, temperature=body.temperature, top_p=body.top_p,
            tool_choice=body.tool_choice if isinstance(body.tool_choice, str)
            else body.tool_choice.model_dump(), tools=[t.model_dump() for t in body.tools],
            usage=usage, metadata=body.metadata, user=body.user,
            parallel_tool_calls=bool(body.parallel_tool_calls)).model_dump(mode="json")

    def _search_item(self) -> dict:
        results = None
        if "file_search_call.results" in self.body.include:
            results = [{"file_id": c.file_id, "filename": c.filename, "text": text,
                        "score": citation.score}
                       for citation, text in zip(self.prepared.chat.citations,
                                                 self.prepared.chat.sources)
                       for c in file_citations([citation], "")]
        return {"type": "file_search_call", "id": self.search_id, "status": "completed",
                "queries": [self.prepared.query], "results": results}

    def _annotations(self, text: str) -> list[dict]:
        return [_annotation(c) for c in file_citations(self.prepared.chat.citations, text)]

    def _event(self, kind: str, **fields: Any) -> str:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _annotation(citation: FileCitation) -> dict:
    return {"type": "file_citation", "file_id": citation.file_id, "filename": citation.filename,
            "index": citation.index}


def _text_part(text: str, annotations: list[dict]) -> dict:
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
