"""The engine deployment: lorag's own InferenceEngine (``engine.backend``, by default the
in-process vLLM engine of ``lorag serve``) in a Ray Serve replica, multiplexed by adapter
version.

A request names its adapter version by the handle's ``multiplexed_model_id``
(``lorag.cluster.adapters.adapter_model_id``); Serve routes it to a replica that already
holds that version, and loads it on another one only when those are busy. A replica loads
a version from a verified copy on its node's disk (``AdapterCache``: fetched from the
registry deployment, sha256 checked); when Serve evicts a version from a replica (least
recently used beyond ``ray.max_adapters_per_replica``) the engine drops it once its
running requests finish. Requests without a model id run on the base model, balanced by
Serve over all replicas.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from adapters.engines import build_engine
from adapters.engines.protocol import AdapterRef, GenerationChunk, GenerationRequest
from lorag.app.settings import Settings, use_local_models_only
from lorag.cluster.adapters import AdapterCache

log = logging.getLogger(__name__)

_END = "end"  # the engine's stream ended (after its last chunk)


@dataclass
class LoadedAdapter:
    """A version as Serve's multiplexer holds it. On eviction Serve awaits the object's
    ``__del__`` attribute; it is set per instance (a coroutine function on the class would
    be called, never awaited, by the garbage collector)."""

    ref: AdapterRef


def _ends(item: object) -> bool:
    """Whether ``item`` is the last thing ``EngineReplica._pump`` puts: the end, or an error."""
    return item is _END or isinstance(item, BaseException)


class EngineReplica:
    """One engine replica (deployed by ``lorag.cluster.app.build_app``)."""

    async def __init__(self, settings: Settings, registry: DeploymentHandle, model: str):
        use_local_models_only()
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        work = Path(tempfile.gettempdir()) / "lorag-ray" / f"engine-{self.replica_id}"
        self.engine = build_engine(settings.engine, model=model, work_dir=work)
        cache_dir = settings.ray.adapter_cache_dir or (
            Path(tempfile.gettempdir()) / "lorag-ray" / "adapters")
        self.adapters = AdapterCache(
            cache_dir, record=lambda model_id: registry.record.remote(model_id),
            fetch=lambda model_id: registry.fetch.remote(model_id))
        async def load(model_id: str) -> LoadedAdapter:  # Serve keeps its state on a function
            return await self._load(model_id)

        self._adapter = serve.multiplexed(
            max_num_models_per_replica=settings.ray.max_adapters_per_replica)(load)
        await self.engine.warm_up()
        log.info("engine replica ready replica=%s model=%s", self.replica_id, model)

    async def _load(self, model_id: str) -> LoadedAdapter:
        ref = await self.adapters.get(model_id)
        loaded = LoadedAdapter(ref)
        loaded.__del__ = lambda: self._unload(ref)
        log.info("adapter placed on replica replica=%s tenant=%s adapter=%s version=%s id=%s",
                 self.replica_id, ref.tenant_id, ref.name, ref.version, ref.int_id)
        return loaded

    async def _unload(self, ref: AdapterRef) -> None:
        log.info("adapter leaves replica replica=%s tenant=%s adapter=%s version=%s id=%s",
                 self.replica_id, ref.tenant_id, ref.name, ref.version, ref.int_id)
        await self.engine.remove_adapter(ref)

    async def generate(self, request: GenerationRequest
                       ) -> AsyncIterator[tuple[str, list[GenerationChunk]]]:
        """Stream ``(replica id, chunks)``: every chunk the engine produced since the last
        item, so a request costs one streamed item per time the ingress reads, not one per
        token (each item is a Ray object and a message between processes: ~2 ms of CPU
        between the two replicas). A ``whole`` request (a non-streamed reply) costs two:
        its first chunks as they come (the ingress learns which replica holds it, and a
        replica that dies later leaves it resumable), then all the others at its end. The
        adapter is the request's multiplexed model id ("" = the base model). Raises what
        the engine and ``AdapterCache.get`` raise, after the chunks produced before the
        error. Cancelling the stream (the client went away) aborts the engine request."""
        model_id = serve.get_multiplexed_model_id()
        adapter = (await self._adapter(model_id)).ref if model_id else None
        request = replace(request, adapter=adapter)
        produced: asyncio.Queue = asyncio.Queue()
        pump = asyncio.create_task(self._pump(request, produced))
        finished = hold = False
        try:
            done = False
            while not done:
                items = [await produced.get()]
                while not produced.empty() or (hold and not _ends(items[-1])):
                    items.append(await produced.get())
                chunks = [item for item in items if isinstance(item, GenerationChunk)]
                if chunks:
                    finished = chunks[-1].finish_reason is not None
                    hold = request.whole
                    yield self.replica_id, chunks
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                done = _END in items
        finally:
            pump.cancel()
            if not finished:
                await asyncio.shield(self.engine.abort(request.request_id))

    async def _pump(self, request: GenerationRequest, into: asyncio.Queue) -> None:
        """The engine's chunks into ``into``, then ``_END`` or the error it raised."""
        try:
            async for chunk in self.engine.generate(request):
                into.put_nowait(chunk)
        except Exception as exc:  # handed to the stream, which raises it
            into.put_nowait(exc)
        else:
            into.put_nowait(_END)

    async def ping(self) -> str:
        """The replica's id, once its engine is warm (for readiness checks)."""
        return self.replica_id

    async def features(self) -> frozenset:
        """The optional sampling features the replica's engine honours."""
        return self.engine.features

    def check_health(self) -> None:
        """Serve's health check: a replica whose engine died is replaced."""
        if not self.engine.ready():
            raise RuntimeError("the inference engine stopped")

    async def __del__(self) -> None:  # pragma: no cover - called by Serve at shutdown
        await self.engine.shutdown()
