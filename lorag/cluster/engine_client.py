"""``RayServeEngine``: the InferenceEngine of the Ray ingress, a client of the engine
deployment through its Serve handle, so the chat code runs unchanged.

Prompts are rendered and counted here with the base model's tokenizer (the chat budget
needs them before generating); generation streams from a replica through
``handle.options(stream=True, multiplexed_model_id=<adapter version>)``; each streamed
item is ``(replica id, chunks)``, the chunks the replica's engine produced since the last
item. ``abort`` cancels the stream, which cancels the replica's generator and aborts its
engine request. A request whose replica dies runs again on another one (``generate``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import replace
from typing import AsyncIterator

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from adapters.engines.common import ChatPrompts
from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationChunk,
                                       GenerationRequest)
from lorag.cluster.adapters import adapter_model_id
from lorag.core.errors import LoragError, ServerError, Unavailable

log = logging.getLogger(__name__)

BASE_MODEL = ""  # the multiplexed model id of base-model requests: no adapter
RETRIES_AFTER_REPLICA_DIED = 1


class RayServeEngine(ChatPrompts):
    """InferenceEngine over the engine deployment's handle. Cheap to build;
    ``warm_up()`` loads the tokenizer and waits until a replica answers."""

    def __init__(self, handle: DeploymentHandle, *, model: str, max_model_len: int,
                 ready_timeout_s: float = 600.0):
        self.handle = handle
        self.model = model
        self.max_model_len = max_model_len
        self.ready_timeout_s = ready_timeout_s
        self._tokenizer = None
        self._streams: dict[str, DeploymentResponseGenerator] = {}
        self._routing: dict[str, Counter[str]] = defaultdict(Counter)
        self._in_flight: dict[str, str] = {}
        self.reruns: dict[str, int] = {}  # request id -> tokens sent before its replica died
        self.features: frozenset[EngineFeature] = frozenset()  # the replicas', at warm-up

    async def warm_up(self) -> None:
        """Raises Unavailable when no engine replica answers within ``ready_timeout_s``."""
        from transformers import AutoTokenizer

        if self._tokenizer is not None:
            return
        tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model)
        try:
            replica = await asyncio.wait_for(self.handle.ping.remote(), self.ready_timeout_s)
        except (asyncio.TimeoutError, RayTaskError) as exc:
            raise Unavailable(f"no engine replica answered: {exc}", param="model") from exc
        self.features = await self.handle.features.remote()
        self._tokenizer = tokenizer
        log.info("Ray engine client ready model=%s first replica=%s", self.model, replica)

    def ready(self) -> bool:
        return self._tokenizer is not None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream from a replica. Raises what the replica's engine raises (InvalidInput,
        NotFound, InvalidAdapter, AdapterUnverified, Unavailable), ServerError otherwise.

        A replica that dies mid-request (Serve replaces it) is survived once: the request
        runs again on another replica. Before the first chunk that is a plain retry; after
        it, only a reproducible request (greedy, or a fixed seed) is resumed: the new
        run's tokens up to what was already sent must be those tokens, and only what
        follows is passed on. Anything else ends with Unavailable."""
        self._require_ready()
        model_id = adapter_model_id(request.adapter) if request.adapter else BASE_MODEL
        bare = replace(request, adapter=None)  # the replica resolves the version itself
        sent = _Sent()
        for attempt in range(1, RETRIES_AFTER_REPLICA_DIED + 2):
            try:
                async for chunk in self._stream(model_id, bare, sent if attempt > 1 else None):
                    sent.add(chunk)
                    yield chunk
                return
            except RayActorError as exc:
                if attempt > RETRIES_AFTER_REPLICA_DIED or (sent.tokens and not _reproducible(
                        request)):
                    raise Unavailable("the engine replica serving this request stopped",
                                      param="model") from exc
                log.warning("engine replica died during request=%s after %d tokens; running "
                            "it again: %s", request.request_id, len(sent.tokens), exc)
                self.reruns[request.request_id] = len(sent.tokens)

    async def _stream(self, model_id: str, request: GenerationRequest, resume: "_Sent | None"
                      ) -> AsyncIterator[GenerationChunk]:
        """One run on a replica; with ``resume``, only what follows the chunks already
        sent (raises Unavailable when this run's answer departs from them)."""
        stream = self.handle.options(stream=True, multiplexed_model_id=model_id).generate.remote(
            request)
        self._streams[request.request_id] = stream
        replay = _Sent() if resume is not None else None
        first = True
        try:
            async for replica, chunks in stream:
                if first:
                    self._routing[model_id][replica] += 1
                    self._in_flight[request.request_id] = replica
                    first = False
                for chunk in chunks:
                    if replay is not None:
                        chunk = replay.after(resume, chunk)
                        if chunk is None:
                            continue
                    yield chunk
        except RayTaskError as exc:
            raise _lorag_error(exc) from None
        finally:
            self._streams.pop(request.request_id, None)
            self._in_flight.pop(request.request_id, None)
            stream.cancel()  # a no-op once the stream has ended

    def routing(self) -> dict[str, dict[str, int]]:
        """Requests per adapter version (model id; "" = base model) and replica id."""
        return {model_id: dict(counts) for model_id, counts in self._routing.items()}

    def in_flight(self) -> dict[str, str]:
        """The replica id of each request being streamed (request id -> replica id),
        from the first chunk until the stream ends."""
        return dict(self._in_flight)

    async def abort(self, request_id: str) -> None:
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            stream.cancel()

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Nothing to send: versions are immutable and named by id, so a superseded one is
        never asked for again and leaves the replicas by Serve's LRU; a deleted one is
        refused by the registry when a replica would load it."""
        log.info("adapter retired tenant=%s adapter=%s version=%s id=%s", adapter.tenant_id,
                 adapter.name, adapter.version, adapter.int_id)

    async def shutdown(self) -> None:
        for stream in self._streams.values():
            stream.cancel()
        self._streams.clear()


def _reproducible(request: GenerationRequest) -> bool:
    """Whether a second run gives the same tokens (greedy, or sampling with a seed)."""
    return request.sampling.temperature == 0 or request.sampling.seed is not None


class _Sent:
    """The tokens and text of a request's chunks so far."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.text = ""

    def add(self, chunk: GenerationChunk) -> None:
        self.tokens.extend(chunk.token_ids)
        self.text += chunk.text

    def after(self, sent: "_Sent", chunk: GenerationChunk) -> GenerationChunk | None:
        """A replayed ``chunk`` reduced to what follows ``sent`` (None: nothing does yet).
        Raises Unavailable when the replay departs from what was sent."""
        start = len(self.tokens)
        self.add(chunk)
        shared = min(len(self.tokens), len(sent.tokens))
        if self.tokens[:shared] != sent.tokens[:shared] or not (
                self.text.startswith(sent.text) or sent.text.startswith(self.text)):
            raise Unavailable("the engine replica serving this request stopped, and a second "
                              "run answered differently", param="model")
        if len(self.tokens) <= len(sent.tokens) and chunk.finish_reason is None:
            return None
        skip = max(0, len(sent.tokens) - start)
        return replace(chunk, text=self.text[len(sent.text):], token_ids=chunk.token_ids[skip:],
                       logprobs=chunk.logprobs[skip:],
                       token_logprobs=chunk.token_logprobs[skip:])


def _lorag_error(exc: RayTaskError) -> LoragError:
    """The replica's own error (its type, message, param, code), or a ServerError."""
    cause = exc.cause
    if isinstance(cause, LoragError):
        return cause
    log.error("engine replica failed: %s", exc)
    return ServerError(f"the engine replica failed: {type(cause).__name__}")
