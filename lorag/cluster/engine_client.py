"""``RayServeEngine``: the InferenceEngine of the Ray ingress, a client of the engine
deployment through its Serve handle, so the chat code runs unchanged.

Prompts are rendered and counted here with the base model's tokenizer (the chat budget
needs them before generating); generation streams from a replica through
``handle.options(stream=True, multiplexed_model_id=<adapter version>)``. ``abort``
cancels the stream, which cancels the replica's generator and aborts its engine request.
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
RETRIES_BEFORE_FIRST_CHUNK = 1


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
        A replica that dies before the first chunk is replaced by another one, once (Serve
        restarts the dead one); after the first chunk the request ends with Unavailable."""
        self._require_ready()
        model_id = adapter_model_id(request.adapter) if request.adapter else BASE_MODEL
        bare = replace(request, adapter=None)  # the replica resolves the version itself
        for attempt in range(1, RETRIES_BEFORE_FIRST_CHUNK + 2):
            started = False
            try:
                async for chunk in self._stream(model_id, bare):
                    started = True
                    yield chunk
                return
            except RayActorError as exc:
                if started or attempt > RETRIES_BEFORE_FIRST_CHUNK:
                    raise Unavailable("the engine replica serving this request stopped",
                                      param="model") from exc
                log.warning("engine replica died before answering request=%s; retrying: %s",
                            request.request_id, exc)

    async def _stream(self, model_id: str, request: GenerationRequest
                      ) -> AsyncIterator[GenerationChunk]:
        stream = self.handle.options(stream=True, multiplexed_model_id=model_id).generate.remote(
            request)
        self._streams[request.request_id] = stream
        first = True
        try:
            async for replica, chunk in stream:
                if first:
                    self._routing[model_id][replica] += 1
                    first = False
                yield chunk
        except RayTaskError as exc:
            raise _lorag_error(exc) from None
        finally:
            self._streams.pop(request.request_id, None)
            stream.cancel()  # a no-op once the stream has ended

    def routing(self) -> dict[str, dict[str, int]]:
        """Requests per adapter version (model id; "" = base model) and replica id."""
        return {model_id: dict(counts) for model_id, counts in self._routing.items()}

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


def _lorag_error(exc: RayTaskError) -> LoragError:
    """The replica's own error (its type, message, param, code), or a ServerError."""
    cause = exc.cause
    if isinstance(cause, LoragError):
        return cause
    log.error("engine replica failed: %s", exc)
    return ServerError(f"the engine replica failed: {type(cause).__name__}")
