"""A prepared chat as OpenAI's response shapes: one completion, or server-sent chunk
events; with the chat metrics, and cancellation when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lorag.app.chat import ChatService, PreparedChat, TokenLogprob, usage_of
from lorag.app.container import Lorag
from lorag.app.limits import ChatTicket
from lorag.app.rollouts import Finished, completion_dict
from lorag.app.quality.guard import GroundingVerdict
from lorag.app.tools import ToolCall, ToolMode, new_call
from server.chat import schemas
from server.errors import sse_error
from server.metrics import Metrics

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499  # nginx's code for a client that went away before the answer


class ChatServing:
    """One prepared chat as an OpenAI completion or chunk stream, with its metrics.

    ``n`` answers are ``n`` engine requests run side by side; choice 0 is the one the
    rollouts record (readout, stored answer)."""

    def __init__(self, chat: ChatService, metrics: Metrics, prepared: PreparedChat, started: float):
        self.chat, self.metrics, self.prepared, self.started = chat, metrics, prepared, started
        self.created = int(time.time())
        self.citations = [schemas.Citation(**vars(c)) for c in prepared.citations]
        # What was generated, for the rollout readout and stored answers (lorag.app.rollouts).
        self.text: list[str] = []
        self.delivered: str | None = None  # what a stream sent (after output redaction)
        self.last: Any = None
        self.failed = False
        self._first = True
        self.first_token_at: float | None = None  # perf_counter of the first text (Server-Timing)
        self._completion_tokens: dict[int, int] = {}
        self.verdict: GroundingVerdict | None = None  # the grounding guard's, when it ran

    async def complete(self) -> schemas.ChatCompletion:
        answers = [_Answer(i) for i in range(self.prepared.n)]
        async for index, chunk in self._merged(whole=True):
            answers[index].add(chunk)
        choices, verdict = [], None
        for answer in answers:
            choice, checked = await self._choice(answer)
            choices.append(choice)
            verdict = checked if answer.index == 0 else verdict
        self.verdict = verdict
        return schemas.ChatCompletion(
            id=self.prepared.request_id, created=self.created, model=self.prepared.brand,
            choices=choices, usage=self._usage(), citations=self.citations,
            grounding=self._grounding(verdict))

    async def _choice(self, answer: "_Answer") -> tuple[schemas.Choice, GroundingVerdict | None]:
        content, calls = self.prepared.tools.read(answer.text())
        verdict = None
        if content is not None and not calls:
            content, verdict = await self.chat.check(self.prepared, content, streamed=False)
        message = schemas.AssistantMessage(content=content, tool_calls=_tool_calls(calls))
        return schemas.Choice(index=answer.index, message=message,
                              finish_reason=self._finish(answer.last, calls),
                              logprobs=_logprobs(self.prepared, answer.scored)), verdict

    async def events(self, include_usage: bool) -> AsyncIterator[str]:
        """SSE events: role + citations first, then text (or tool call) deltas, then
        each choice's finish (+ usage)."""
        streams = [_ChoiceStream(i, self) for i in range(self.prepared.n)]
        try:
            yield self._event([schemas.ChunkChoice(index=s.index, delta=schemas.Delta(
                role="assistant", content="")) for s in streams], citations=self.citations)
            async for index, chunk in self._merged():
                for choice in streams[index].feed(chunk):
                    yield self._event([choice])
            for stream in streams:
                for choice in stream.close():
                    yield self._event([choice])
            first = streams[0]
            self.delivered = first.delivered()
            verdict = None
            if not first.calls:
                _, verdict = await self.chat.check(self.prepared, self.delivered, streamed=True)
            self.verdict = verdict
            grounding = self._grounding(verdict)
            finish = [schemas.ChunkChoice(index=s.index, delta=schemas.Delta(),
                                          finish_reason=self._finish(s.last, s.calls))
                      for s in streams]
            if include_usage:
                yield self._event(finish)
                yield self._event([], usage=self._usage(), grounding=grounding)
            else:
                yield self._event(finish, usage=self._usage(), grounding=grounding)
        except Exception as exc:  # headers are sent: the error becomes an event
            yield sse_error(exc)
        yield "data: [DONE]\n\n"

    async def _merged(self, whole: bool = False) -> AsyncIterator[tuple[int, Any]]:
        """(choice, chunk) of the ``n`` answers as they come; stopping early (or a
        failing answer) cancels the others, which aborts their engine requests.
        ``whole``: a non-streamed reply (``GenerationRequest.whole``)."""
        if self.prepared.n == 1:
            async for chunk in self._chunks(0, whole):
                yield 0, chunk
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index: int) -> None:
            try:
                async for chunk in self._chunks(index, whole):
                    await queue.put((index, chunk, None))
                await queue.put((index, None, None))
            except Exception as exc:
                await queue.put((index, None, exc))

        tasks = [asyncio.ensure_future(pump(i)) for i in range(self.prepared.n)]
        try:
            running = len(tasks)
            while running:
                index, chunk, error = await queue.get()
                if error is not None:
                    raise error
                if chunk is None:
                    running -= 1
                    continue
                yield index, chunk
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _chunks(self, index: int, whole: bool) -> AsyncIterator[Any]:
        tenant, brand = self.prepared.tenant_id, self.prepared.brand
        try:
            async for chunk in self.chat.generate(self.prepared, index, whole=whole):
                if self._first and (chunk.text or chunk.finish_reason):
                    self.first_token_at = time.perf_counter()
                    self.metrics.ttft.labels(tenant, brand).observe(self.first_token_at - self.started)
                    self._first = False
                self._completion_tokens[index] = chunk.completion_tokens
                if index == 0:
                    self.text.append(chunk.text)
                    self.last = chunk
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            if index == 0:
                self.metrics.aborted.labels(tenant, brand).inc()
            raise
        except Exception:
            self.failed = True
            raise

    def _finish(self, last: Any, calls: list[ToolCall]) -> str | None:
        if calls and self.prepared.tools.mode is not ToolMode.NAMED:
            return "tool_calls"  # as OpenAI: a forced function's call ends with "stop"
        return last.finish_reason if last else None

    def token_counts(self) -> tuple[int, int]:
        """(prompt, completion) tokens so far, all choices, for the tenant's limits and usage."""
        return usage_of(self.prepared, self.last).prompt_tokens, sum(self._completion_tokens.values())

    def groundedness(self) -> float | None:
        """The answer's grounding score for the rollout readout (None: not scored)."""
        return self.verdict.groundedness if self.verdict else None

    def _grounding(self, verdict: GroundingVerdict | None) -> schemas.Grounding | None:
        if verdict is None:
            return None
        self.metrics.observe_grounding(self.prepared.tenant_id, self.prepared.brand, verdict)
        return schemas.Grounding(**verdict.to_dict())

    def _usage(self) -> schemas.Usage:
        """Prompt tokens once, completion tokens of all the choices."""
        one = usage_of(self.prepared, self.last)
        completion = sum(self._completion_tokens.values())
        self.metrics.observe_chat(self.prepared.tenant_id, self.prepared.brand,
                                  one.prompt_tokens, completion)
        return schemas.Usage(prompt_tokens=one.prompt_tokens, completion_tokens=completion,
                             total_tokens=one.prompt_tokens + completion)

    def _event(self, choices: list[schemas.ChunkChoice], **extra: Any) -> str:
        chunk = schemas.ChatCompletionChunk(id=self.prepared.request_id, created=self.created,
                                            model=self.prepared.brand, choices=choices, **extra)
        data = chunk.model_dump(mode="json")
        for key in ("usage", "citations", "grounding"):  # only on the chunks that carry them
            if data[key] is None:
                del data[key]
        for choice in data["choices"]:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
            for call in choice["delta"].get("tool_calls", ()):
                call["function"] = {k: v for k, v in call["function"].items() if v is not None}
                for key in ("id", "type"):
                    if call[key] is None:
                        del call[key]
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Answer:
    """One choice's chunks, gathered for a whole (non-streamed) completion."""

    def __init__(self, index: int):
        self.index = index
        self.parts: list[str] = []
        self.scored: list[TokenLogprob] = []
        self.last: Any = None

    def add(self, chunk: Any) -> None:
        self.parts.append(chunk.text)
        self.scored += chunk.token_logprobs
        self.last = chunk

    def text(self) -> str:
        return "".join(self.parts)


class _ChoiceStream:
    """One choice of a stream: engine chunks in, OpenAI chunk choices out.

    Plain answers stream as text (through the brand's output redaction); a named
    function's call streams its arguments as they are generated; with ``required`` or
    ``auto`` the answer is read whole (``<tool_call>`` blocks, or the JSON array of
    calls) and its content and calls are sent when it ends."""

    def __init__(self, index: int, serving: ChatServing):
        self.index, self.prepared = index, serving.prepared
        checks = serving.chat.checks
        self.redactor = (checks.stream_redactor(self.prepared.tenant_id, self.prepared.quality)
                         if checks and not self.prepared.tools.active else None)
        self.mode = self.prepared.tools.mode
        self.sent: list[str] = []
        self.held: list[str] = []  # whole-answer modes: the text until the end
        self.held_logprobs: list[TokenLogprob] = []
        self.calls: list[ToolCall] = []
        self.last: Any = None

    def feed(self, chunk: Any) -> list[schemas.ChunkChoice]:
        self.last = chunk
        if self.mode in (ToolMode.REQUIRED, ToolMode.AUTO):
            self.held.append(chunk.text)
            self.held_logprobs += chunk.token_logprobs
            return []
        if self.mode is ToolMode.NAMED:
            return self._arguments(chunk)
        text = self.redactor.feed(chunk.text) if self.redactor else chunk.text
        return self._text(text, chunk.token_logprobs)

    def close(self) -> list[schemas.ChunkChoice]:
        if self.mode in (ToolMode.REQUIRED, ToolMode.AUTO):
            content, self.calls = self.prepared.tools.read("".join(self.held))
            out = self._text(content or "", self.held_logprobs)
            deltas = [schemas.ToolCallDelta(index=i, id=c.id, type="function",
                                            function=schemas.FunctionCallDelta(
                                                name=c.name, arguments=c.arguments))
                      for i, c in enumerate(self.calls)]
            return out + [self._choice(schemas.Delta(tool_calls=[d])) for d in deltas]
        if self.redactor and (rest := self.redactor.flush()):
            return self._text(rest, [])
        return []

    def delivered(self) -> str:
        return "".join(self.sent)

    def _arguments(self, chunk: Any) -> list[schemas.ChunkChoice]:
        out = []
        if not self.calls:
            self.calls = [new_call(self.prepared.tools.function, "")]
            call = self.calls[0]
            out.append(self._choice(schemas.Delta(tool_calls=[schemas.ToolCallDelta(
                index=0, id=call.id, type="function",
                function=schemas.FunctionCallDelta(name=call.name, arguments=""))])))
        if chunk.text:
            self.sent.append(chunk.text)
            out.append(self._choice(schemas.Delta(tool_calls=[schemas.ToolCallDelta(
                index=0, function=schemas.FunctionCallDelta(arguments=chunk.text))]),
                chunk.token_logprobs))
        return out

    def _text(self, text: str, scored: list[TokenLogprob]) -> list[schemas.ChunkChoice]:
        if not text and not scored:
            return []
        self.sent.append(text)
        return [self._choice(schemas.Delta(content=text), scored)]

    def _choice(self, delta: schemas.Delta, scored: list[TokenLogprob] = ()) -> schemas.ChunkChoice:
        return schemas.ChunkChoice(index=self.index, delta=delta,
                                   logprobs=_logprobs(self.prepared, list(scored)))


LOWEST_LOGPROB = -9999.0  # OpenAI's floor; JSON has no -Infinity


def _logprobs(prepared: PreparedChat, scored: list[TokenLogprob]) -> schemas.ChoiceLogprobs | None:
    if not prepared.sampling.logprobs:
        return None
    return schemas.ChoiceLogprobs(content=[schemas.TokenLogprob(
        token=t.token, logprob=max(t.logprob, LOWEST_LOGPROB), bytes=list(t.token.encode()),
        top_logprobs=[schemas.TopLogprob(token=token, logprob=max(lp, LOWEST_LOGPROB),
                                         bytes=list(token.encode())) for token, lp in t.top])
        for t in scored])


def _tool_calls(calls: list[ToolCall]) -> list[schemas.ToolCallOut] | None:
    if not calls:
        return None
    return [schemas.ToolCallOut(id=c.id, function=schemas.FunctionCallOut(
        name=c.name, arguments=c.arguments)) for c in calls]


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


Prepared = TypeVar("Prepared")


async def admitted(lorag: Lorag, tenant: str, prepare: Callable[[], Awaitable[Prepared]],
                   chat_of: Callable[[Prepared], PreparedChat] = lambda p: p
                   ) -> tuple[ChatTicket, Prepared]:
    """A generation request admitted under the tenant's limits: 429 over requests per
    minute or concurrency before any work, then prompt + n x max_tokens taken from its
    tokens per minute once the prompt is known. The ticket ends here when this raises;
    otherwise the caller ends it (``ticket.finish``, or a ``LimitedStream``)."""
    ticket = lorag.limits.admit_chat(tenant)
    try:
        prepared = await prepare()
        chat = chat_of(prepared)
        ticket.reserve_tokens(chat.prompt_tokens + chat.n * chat.sampling.max_tokens)
    except BaseException:
        ticket.finish(0, 0, served=False)
        raise
    return ticket, prepared


async def in_generation_slot(ticket: ChatTicket, work: Awaitable[Any],
                             timing: "Timing | None" = None) -> Any:
    """``work`` once the tenant's turn for a generation slot has come (fair order)."""
    async with ticket.generating():
        if timing is not None:
            timing.granted = time.perf_counter()
        return await work


class Timing:
    """Where a non-streamed answer's time went, as a ``Server-Timing`` header (ms):
    ``prepare`` (admission, retrieval, prompt), ``queue`` (waiting for a generation
    slot), ``first`` (slot to first token), ``decode`` (first token to the answer),
    ``record`` (the rollout record after it), ``total``."""

    def __init__(self, started: float, prepared: float):
        self.started, self.prepared = started, prepared
        self.granted = self.answered = prepared

    def header(self, serving: ChatServing) -> str:
        now = time.perf_counter()
        first = serving.first_token_at or self.answered
        spans = (("prepare", self.started, self.prepared), ("queue", self.prepared, self.granted),
                 ("first", self.granted, first), ("decode", first, self.answered),
                 ("record", self.answered, now), ("total", self.started, now))
        return ", ".join(f"{name};dur={max(0.0, (end - begin) * 1000):.1f}"
                         for name, begin, end in spans)


async def _events_in_slot(ticket: ChatTicket, events: AsyncIterator[str]) -> AsyncIterator[str]:
    async with ticket.generating():
        async for event in events:
            yield event


class LimitedStream(StreamingResponse):
    """An SSE chat stream generated in a generation slot; its ticket ends whenever the
    response ends: sent in full, failed, or the client gone (even before the first byte)."""

    def __init__(self, ticket: ChatTicket, serving: ChatServing, events: AsyncIterator[str],
                 **kwargs: Any):
        super().__init__(_events_in_slot(ticket, events), media_type="text/event-stream", **kwargs)
        self.ticket, self.serving = ticket, serving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.finish(*self.serving.token_counts())


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
