"""The vLLM engine: an in-process ``AsyncLLM`` with LoRA enabled, one ``LoRARequest``
per request.

vLLM keeps ``max_loras`` adapters active per batch and ``max_cpu_loras`` in host memory,
loading others from disk on demand. lorag gives it adapters by their stable int id
(never reused), so its caches can never serve stale weights. A new adapter is loaded
with ``add_lora`` before its first request: a load failure then fails that request
(with the reason) instead of the engine's step loop, so everyone else keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import AsyncIterator

from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationChunk,
                                      GenerationRequest, Sampling, TokenLogprob)
from adapters.engines.cpu_affinity import place_engine_core
from adapters.engines.vllm_cpu_fix import install_lora_ops
from adapters.engines.common import (AdapterSnapshots, ChatPrompts, InFlight, adapter_label,
                                     check_logit_bias, prompt_text, room_for)
from adapters.settings import EngineSettings
from adapters.validation import BaseModelSpec, InvalidAdapter, check_served_names
from lorag.core.errors import InvalidInput, LoragError, NotFound, ServerError, Unavailable

log = logging.getLogger(__name__)

# vLLM accepts only these max_lora_rank values; the engine takes the smallest that fits.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(max_rank: int) -> int:
    for rank in VLLM_LORA_RANKS:
        if rank >= max_rank:
            return rank
    raise InvalidInput(f"max_lora_rank {max_rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})",
                       param="engine.max_lora_rank")


@contextlib.contextmanager
def _spawn_env(values: dict[str, str]):
    """``values`` in the environment (where not already set there) for processes started
    meanwhile, removed again afterwards."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class VLLMEngine(ChatPrompts):
    """InferenceEngine on vLLM. Construction is cheap; ``warm_up()`` starts vLLM."""

    features = frozenset(EngineFeature)  # structured output by xgrammar, see _engine_args

    def __init__(self, settings: EngineSettings, *, model: str, work_dir: Path):
        self.settings = settings
        self.model = str(model)
        self.max_model_len = settings.max_model_len
        self.work_dir = Path(work_dir)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._llm = None
        self._tokenizer = None
        self._snapshots: AdapterSnapshots | None = None
        self._inflight = InFlight()
        self._loaded: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._counts = {"adapter_loads": 0, "adapter_load_failures": 0, "adapter_unloads": 0}
        self._starting = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Start vLLM (seconds for small models) and run one token; raises ServerError."""
        async with self._starting:
            if self._llm is None:
                await self._start()

    async def _start(self) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING",
                              "1" if self.settings.engine_process else "0")
        install_lora_ops(self.settings.lora_ops)
        started = time.perf_counter()
        try:
            from transformers import AutoTokenizer
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            if self.settings.lora_target_modules and Path(self.model).is_dir():
                check_served_names(self.settings.lora_target_modules,
                                   BaseModelSpec.from_folder(self.model))
            # both block for seconds: in a thread, so the server answers /health meanwhile
            self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model)
            # oneDNN reads its cache size when the engine process starts, which vLLM spawns
            # (with this environment) inside from_engine_args; lorag's own process keeps its
            # setting (EngineSettings.onednn_cache)
            with _spawn_env({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(self.settings.onednn_cache)}):
                self._llm = await asyncio.to_thread(AsyncLLM.from_engine_args,
                                                    AsyncEngineArgs(**self._engine_args()))
        except LoragError:
            raise
        except Exception as exc:
            raise ServerError(f"vLLM failed to start on {self.model}: {exc}") from exc
        self._place_engine_core()
        self.loop = asyncio.get_running_loop()
        self._snapshots = AdapterSnapshots(self.work_dir / "vllm-loras")
        async for _ in self.generate(GenerationRequest("warm-up", prompt="Hello",
                                                       sampling=Sampling(max_tokens=1))):
            pass
        log.info("vLLM engine ready model=%s in %.1f s", self.model, time.perf_counter() - started)

    def _place_engine_core(self) -> None:
        import psutil

        try:
            place_engine_core(self.settings.engine_core_cpus)
        except (OSError, psutil.Error) as exc:  # it stays where the OS put it
            log.warning("vLLM engine core left where it runs (engine.engine_core_cpus=%s): %s",
                        self.settings.engine_core_cpus, exc)

    def _engine_args(self) -> dict:
        s = self.settings
        return dict(
            model=self.model, tokenizer=self.model, dtype=s.dtype, seed=s.seed,
            max_model_len=s.max_model_len, max_num_seqs=s.max_num_seqs,
            enable_lora=True, max_loras=s.max_loras, max_cpu_loras=max(s.max_cpu_loras, s.max_loras),
            max_lora_rank=vllm_lora_rank(s.max_lora_rank), lora_target_modules=s.lora_target_modules,
            kv_cache_memory_bytes=s.kv_cache_bytes, enforce_eager=s.enforce_eager,
            # compact JSON: with any whitespace allowed, small models loop on it
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
            disable_log_stats=True)  # vLLM's CPU LoRA ops are replaced by a plugin: vllm_cpu_fix

    def ready(self) -> bool:
        return self._llm is not None and not getattr(self._llm, "errored", False)

    def stats(self) -> dict[str, float]:
        """Numbers for /metrics: adapters loaded by lorag, running requests, load counts."""
        return {"adapters_loaded": len(self._loaded), "requests_running": self._inflight.total(),
                **self._counts}

    async def shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()
            log.info("vLLM engine shut down model=%s", self.model)

    # -- generation --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream deltas. Raises InvalidInput (messages too long), NotFound (a deleted
        adapter), InvalidAdapter (vLLM refused the adapter), Unavailable (not running)."""
        self._require_ready()
        check_logit_bias(request.sampling, len(self._tokenizer))
        ids = self._tokenizer.encode(prompt_text(self, request), add_special_tokens=False)
        params = self._sampling(request.sampling, room_for(len(ids), request.sampling.max_tokens,
                                                           self.max_model_len))
        _check_structured(params)
        lora = await self._lora(request.adapter) if request.adapter else None
        int_id = request.adapter.int_id if request.adapter else None
        self._inflight.add(int_id)
        try:
            async for chunk in self._stream(request, ids, params, lora):
                yield chunk
        finally:
            self._inflight.done(int_id)

    async def _stream(self, request: GenerationRequest, ids: list[int], params,
                      lora) -> AsyncIterator[GenerationChunk]:
        produced = 0
        try:
            async for out in self._llm.generate({"prompt_token_ids": ids}, params,
                                                request.request_id, lora_request=lora):
                output = out.outputs[0]
                produced += len(output.token_ids)
                scored = _token_logprobs(output, request.sampling) if request.sampling.logprobs else []
                yield GenerationChunk(
                    text=output.text, token_ids=list(output.token_ids),
                    logprobs=[t.logprob for t in scored], token_logprobs=scored,
                    finish_reason=_finish_reason(output.finish_reason) if out.finished else None,
                    prompt_tokens=len(ids), completion_tokens=produced)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # vLLM's own errors: translate, never leak a traceback
            raise self._translate(exc, request) from exc

    def _translate(self, exc: Exception, request: GenerationRequest) -> LoragError:
        name = type(exc).__name__
        adapter = adapter_label(request.adapter) if request.adapter else "base"
        log.error("generation failed request=%s adapter=%s: %s: %s", request.request_id,
                  adapter, name, exc)
        if name == "EngineDeadError" or not self.ready():
            return Unavailable("the inference engine stopped", param="model")
        if name in ("VLLMValidationError", "ValueError"):
            return InvalidInput(str(exc), param="messages")
        return ServerError(f"generation failed: {name}")

    def _sampling(self, sampling: Sampling, max_tokens: int):
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        structured = None
        if sampling.structured is not None:
            schema = sampling.structured.schema
            structured = (StructuredOutputsParams(json=schema) if schema is not None
                          else StructuredOutputsParams(json_object=True))
        return SamplingParams(
            n=1, max_tokens=max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            stop=list(sampling.stop) or None, seed=sampling.seed,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            logit_bias=dict(sampling.logit_bias) or None, structured_outputs=structured,
            logprobs=sampling.top_logprobs if sampling.logprobs else None,
            output_kind=RequestOutputKind.DELTA)

    # -- adapters ----------------------------------------------------------------------

    async def _lora(self, ref: AdapterRef):
        """The LoRARequest for ``ref``, loading it into vLLM on first use (once, under a
        per-adapter lock). Raises NotFound for a deleted version, InvalidAdapter when
        vLLM refuses the files."""
        from vllm.lora.request import LoRARequest

        if not (Path(ref.path) / "adapter_config.json").is_file():
            raise NotFound(f"adapter {ref.name!r} version {ref.version} was deleted",
                           param="adapter", code="adapter_not_found")
        lora = LoRARequest(lora_name=adapter_label(ref), lora_int_id=ref.int_id,
                           lora_path=str(self._snapshots.path(ref)))
        if ref.int_id in self._loaded:
            return lora
        async with self._locks.setdefault(ref.int_id, asyncio.Lock()):
            if ref.int_id not in self._loaded:
                await self._load(ref, lora)
        return lora

    async def _load(self, ref: AdapterRef, lora) -> None:
        started = time.perf_counter()
        try:
            await self._llm.add_lora(lora)
        except Exception as exc:
            log.error("adapter load failed tenant=%s adapter=%s version=%s id=%s: %s",
                      ref.tenant_id, ref.name, ref.version, ref.int_id, exc)
            self._snapshots.drop(ref)
            self._counts["adapter_load_failures"] += 1
            raise InvalidAdapter(f"the engine could not load adapter {ref.name!r}: {exc}",
                                 param="adapter") from None
        self._loaded.add(ref.int_id)
        self._counts["adapter_loads"] += 1
        log.info("loaded adapter tenant=%s adapter=%s version=%s id=%s in %.3f s", ref.tenant_id,
                 ref.name, ref.version, ref.int_id, time.perf_counter() - started)

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Drop ``adapter`` from vLLM's caches once its running requests have finished.

        Under the adapter's lock, and after marking it unloaded, so a request arriving
        meanwhile waits and then loads it afresh instead of losing its files mid-run.
        """
        if self._llm is None:
            return
        async with self._locks.setdefault(adapter.int_id, asyncio.Lock()):
            self._loaded.discard(adapter.int_id)
            await self._inflight.wait_idle(adapter.int_id)
            try:
                await self._llm.remove_lora(adapter.int_id)
            except Exception as exc:  # already evicted, or the engine stopped
                log.warning("unload failed tenant=%s adapter=%s version=%s id=%s: %s",
                            adapter.tenant_id, adapter.name, adapter.version, adapter.int_id, exc)
            self._snapshots.drop(adapter)
        self._counts["adapter_unloads"] += 1
        log.info("unloaded adapter tenant=%s adapter=%s version=%s id=%s", adapter.tenant_id,
                 adapter.name, adapter.version, adapter.int_id)

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)


def _check_structured(params) -> None:
    """Raises InvalidInput (param ``response_format``) for a JSON schema the guided
    decoding backend cannot compile, before the request reaches the engine."""
    if params.structured_outputs is None:
        return
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

    try:
        validate_xgrammar_grammar(params)
    except Exception as exc:
        raise InvalidInput(f"the JSON schema cannot be used for guided decoding: {exc}",
                           param="response_format") from None


def _token_logprobs(output, sampling: Sampling) -> list[TokenLogprob]:
    """Each sampled token with its log-probability and the ``top_logprobs`` most likely
    tokens at its position (vLLM gives the sampled one plus the top ``logprobs``)."""
    scored = []
    for token, step in zip(output.token_ids, output.logprobs or ()):
        ranked = sorted(step.values(), key=lambda lp: lp.rank or 0)[: sampling.top_logprobs]
        scored.append(TokenLogprob(step[token].decoded_token or "", step[token].logprob,
                                   tuple((lp.decoded_token or "", lp.logprob) for lp in ranked)))
    return scored


def _finish_reason(reason: str | None) -> str:
    return reason or "stop"
