"""A prepared completion as OpenAI's ``text_completion`` shapes: one object, or events."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from lorag.app.chat import ChatService, PreparedChat, TokenLogprob
from server.chat.serving import LOWEST_LOGPROB, ChatServing
from server.completions import schemas
from server.errors import sse_error
from server.metrics import Metrics


class CompletionServing(ChatServing):
    """The chat's generation, metrics and ``n`` side-by-side answers, with the
    completions API's shapes. ``top_logprobs`` None: no logprobs asked."""

    def __init__(self, chat: ChatService, metrics: Metrics, prepared: PreparedChat,
                 started: float, *, echo: bool, prompt: str, top_logprobs: int | None):
        super().__init__(chat, metrics, prepared, started)
        self.echo, self.prompt, self.top_logprobs = echo, prompt, top_logprobs

    async def completion(self) -> schemas.Completion:
        texts: dict[int, list[str]] = {i: [] for i in range(self.prepared.n)}
        scored: dict[int, list[TokenLogprob]] = {i: [] for i in range(self.prepared.n)}
        last: dict[int, Any] = {}
        async for index, chunk in self._merged():
            texts[index].append(chunk.text)
            scored[index] += chunk.token_logprobs
            last[index] = chunk
        choices = [schemas.CompletionChoice(
            index=i, text=(self.prompt if self.echo else "") + "".join(texts[i]),
            finish_reason=last[i].finish_reason if i in last else None,
            logprobs=self._logprobs(scored[i], len(self.prompt) if self.echo else 0))
            for i in range(self.prepared.n)]
        return schemas.Completion(id=self.prepared.request_id, created=self.created,
                                  model=self.prepared.brand, choices=choices,
                                  usage=self._usage(), citations=self.citations)

    async def completion_events(self, include_usage: bool) -> AsyncIterator[str]:
        """Text deltas per choice (the prompt first with ``echo``), then each choice's
        finish; usage on the last event (or, with ``include_usage``, an event of its own)."""
        offsets = {i: len(self.prompt) if self.echo else 0 for i in range(self.prepared.n)}
        finished: dict[int, str | None] = {}
        try:
            if self.echo or self.citations:
                yield self._completion_event([schemas.CompletionChoice(
                    index=i, text=self.prompt if self.echo else "", finish_reason=None)
                    for i in range(self.prepared.n)], citations=self._citations())
            async for index, chunk in self._merged():
                if chunk.finish_reason is not None:
                    finished[index] = chunk.finish_reason
                if chunk.text or chunk.token_logprobs or chunk.finish_reason:
                    yield self._completion_event([schemas.CompletionChoice(
                        index=index, text=chunk.text, finish_reason=chunk.finish_reason,
                        logprobs=self._logprobs(chunk.token_logprobs, offsets[index]))])
                offsets[index] += len(chunk.text)
            if include_usage:
                yield self._completion_event([], usage=self._usage())
        except Exception as exc:  # headers are sent: the error becomes an event
            yield sse_error(exc)
        yield "data: [DONE]\n\n"

    def _citations(self) -> list[schemas.Citation] | None:
        return self.citations or None

    def _logprobs(self, scored: list[TokenLogprob], offset: int) -> schemas.CompletionLogprobs | None:
        if self.top_logprobs is None:
            return None
        offsets = []
        for token in scored:
            offsets.append(offset)
            offset += len(token.token)
        return schemas.CompletionLogprobs(
            tokens=[t.token for t in scored],
            token_logprobs=[max(t.logprob, LOWEST_LOGPROB) for t in scored],
            top_logprobs=[{token: max(lp, LOWEST_LOGPROB) for token, lp in t.top} for t in scored],
            text_offset=offsets)

    def _completion_event(self, choices: list[schemas.CompletionChoice], **extra: Any) -> str:
        event = schemas.Completion(id=self.prepared.request_id, created=self.created,
                                   model=self.prepared.brand, choices=choices, **extra)
        data = event.model_dump(mode="json")
        for key in ("usage", "citations"):  # only on the events that carry them
            if data[key] is None:
                del data[key]
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
