"""A prepared chat as OpenAI's response shapes: one completion, or server-sent chunk
events; with the chat metrics, and cancellation when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, AsyncIterator, Awaitable

from fastapi import Request, Response

from lorag.app.chat import ChatService, PreparedChat, usage_of
from lorag.app.container import Lorag
from lorag.app.rollouts import Finished, completion_dict
from lorag.app.quality.guard import GroundingVerdict
from server.chat import schemas
from server.errors import sse_error
from server.metrics import Metrics

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499  # nginx's code for a client that went away before the answer


class ChatServing:
    """One prepared chat as an OpenAI completion or chunk stream, with its metrics."""

    def __init__(self, chat: ChatService, metrics: Metrics, prepared: PreparedChat, started: float):
        self.chat, self.metrics, self.prepared, self.started = chat, metrics, prepared, started
        self.created = int(time.time())
        self.citations = [schemas.Citation(**vars(c)) for c in prepared.citations]
        # What was generated, for the rollout readout and stored answers (lorag.app.rollouts).
        self.text: list[str] = []
        self.delivered: str | None = None  # what a stream sent (after output redaction)
        self.last: Any = None
        self.failed = False
        self.verdict: GroundingVerdict | None = None  # the grounding guard's, when it ran

    async def complete(self) -> schemas.ChatCompletion:
        parts: list[str] = []
        last = None
        async for chunk in self._chunks():
            parts.append(chunk.text)
            last = chunk
        text, verdict = await self.chat.check(self.prepared, "".join(parts), streamed=False)
        self.verdict = verdict
        message = schemas.AssistantMessage(content=text)
        return schemas.ChatCompletion(
            id=self.prepared.request_id, created=self.created, model=self.prepared.brand,
            choices=[schemas.Choice(message=message,
                                    finish_reason=last.finish_reason if last else None)],
            usage=self._usage(last), citations=self.citations, grounding=self._grounding(verdict))

    async def events(self, include_usage: bool) -> AsyncIterator[str]:
        """SSE events: role + citations first, then text deltas, then finish (+ usage)."""
        last = None
        sent: list[str] = []
        redactor = self.chat.checks.stream_redactor(self.prepared.tenant_id, self.prepared.quality) \
            if self.chat.checks else None
        try:
            yield self._event([schemas.ChunkChoice(delta=schemas.Delta(role="assistant", content=""))],
                              citations=self.citations)
            async for chunk in self._chunks():
                last = chunk
                text = redactor.feed(chunk.text) if redactor else chunk.text
                if text:
                    sent.append(text)
                    yield self._event([schemas.ChunkChoice(delta=schemas.Delta(content=text))])
            if redactor and (rest := redactor.flush()):
                sent.append(rest)
                yield self._event([schemas.ChunkChoice(delta=schemas.Delta(content=rest))])
            self.delivered = "".join(sent)
            _, verdict = await self.chat.check(self.prepared, self.delivered, streamed=True)
            self.verdict = verdict
            grounding = self._grounding(verdict)
            finish = [schemas.ChunkChoice(delta=schemas.Delta(),
                                          finish_reason=last.finish_reason if last else None)]
            if include_usage:
                yield self._event(finish)
                yield self._event([], usage=self._usage(last), grounding=grounding)
            else:
                yield self._event(finish, usage=self._usage(last), grounding=grounding)
        except Exception as exc:  # headers are sent: the error becomes an event
            yield sse_error(exc)
        yield "data: [DONE]\n\n"

    async def _chunks(self) -> AsyncIterator[Any]:
        first = True
        tenant, brand = self.prepared.tenant_id, self.prepared.brand
        try:
            async for chunk in self.chat.generate(self.prepared):
                if first and (chunk.text or chunk.finish_reason):
                    self.metrics.ttft.labels(tenant, brand).observe(time.perf_counter() - self.started)
                    first = False
                self.text.append(chunk.text)
                self.last = chunk
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            self.metrics.aborted.labels(tenant, brand).inc()
            raise
        except Exception:
            self.failed = True
            raise

    def groundedness(self) -> float | None:
        """The answer's grounding score for the rollout readout (None: not scored)."""
        return self.verdict.groundedness if self.verdict else None

    def _grounding(self, verdict: GroundingVerdict | None) -> schemas.Grounding | None:
        if verdict is None:
            return None
        self.metrics.observe_grounding(self.prepared.tenant_id, self.prepared.brand, verdict)
        return schemas.Grounding(**verdict.to_dict())

    def _usage(self, last: Any) -> schemas.Usage:
        usage = usage_of(self.prepared, last)
        self.metrics.observe_chat(self.prepared.tenant_id, self.prepared.brand,
                                  usage.prompt_tokens, usage.completion_tokens)
        return schemas.Usage(prompt_tokens=usage.prompt_tokens,
                             completion_tokens=usage.completion_tokens,
                             total_tokens=usage.total_tokens)

    def _event(self, choices: list[schemas.ChunkChoice], **extra: Any) -> str:
        chunk = schemas.ChatCompletionChunk(id=self.prepared.request_id, created=self.created,
                                            model=self.prepared.brand, choices=choices, **extra)
        data = chunk.model_dump(mode="json")
        for key in ("usage", "citations", "grounding"):  # only on the chunks that carry them
            if data[key] is None:
                del data[key]
        for choice in data["choices"]:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class RolloutReport:
    """Tells the rollouts how a served request ended: readout, stored answer, shadow copy."""

    def __init__(self, lorag: Lorag, serving: ChatServing, messages: list[dict],
                 store: bool | None, metadata: dict | None):
        self.lorag, self.serving, self.messages = lorag, serving, messages
        self.store, self.metadata = store, metadata

    async def done(self, completion: schemas.ChatCompletion | None) -> None:
        """Record the request; ``completion`` None: it failed (or was never finished)."""
        serving, prepared = self.serving, self.serving.prepared
        last = serving.last
        failed = serving.failed or completion is None
        finished = Finished(None if failed else completion.model_dump(mode="json"), failed,
                            time.perf_counter() - serving.started, prepared.prompt_tokens,
                            last.completion_tokens if last else 0, serving.groundedness())
        await self._record(finished)

    async def after_stream(self) -> None:
        """Record a streamed answer once its last event is sent (a background task of the
        response: the client does not wait for it)."""
        serving, prepared = self.serving, self.serving.prepared
        last = serving.last
        failed = serving.failed or last is None or last.finish_reason is None
        text = serving.delivered if serving.delivered is not None else "".join(serving.text)
        verdict = serving.verdict.to_dict() if serving.verdict else None
        completion = None if failed else completion_dict(
            prepared, text, last.finish_reason, last.completion_tokens, verdict)
        await self._record(Finished(completion, failed, time.perf_counter() - serving.started,
                                    prepared.prompt_tokens, last.completion_tokens if last else 0,
                                    serving.groundedness()))

    async def _record(self, finished: Finished) -> None:
        await asyncio.to_thread(self._record_in_thread, finished)
        if not finished.error:
            self.lorag.rollouts.start_shadow(self.lorag.chat, self.serving.prepared,
                                             self.messages, self.serving.prepared.request_id)

    def _record_in_thread(self, finished: Finished) -> None:
        rollouts, prepared = self.lorag.rollouts, self.serving.prepared
        store = rollouts.should_store(prepared.tenant_id, prepared.brand, self.store)
        rollouts.finish(prepared, finished, store=store, messages=self.messages,
                        metadata=self.metadata)


async def cancel_on_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Run ``work`` unless the client goes away first; then cancel it (which aborts
    the engine request) and answer 499 to nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED)
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
