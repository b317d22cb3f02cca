"""The reference engine: transformers + PEFT, several adapters on one ``PeftModel``.

Slow but simple, and the oracle the vLLM engine is checked against: it decodes token by
token with a KV cache, selecting each request's adapter (``set_adapter``) or the base
model (``disable_adapter``) before every step, so interleaved requests for different
adapters share one model. All torch work runs on one worker thread; the event loop
only awaits it. Also for machines without vLLM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationChunk,
                                      GenerationRequest, Sampling, TokenLogprob)
from adapters.engines.common import (AdapterSnapshots, ChatPrompts, InFlight, adapter_label,
                                     check_logit_bias, prompt_text, room_for)
from adapters.settings import EngineSettings
from adapters.validation import InvalidAdapter
from lorag.core.errors import LoragError, NotFound, ServerError

log = logging.getLogger(__name__)


@dataclass
class _Decode:
    """One request's decoding state, touched only on the worker thread."""

    adapter: str | None
    sampling: Sampling
    max_tokens: int
    input_ids: Any  # torch.Tensor [1, n]: the prompt, then the last sampled token
    generator: Any = None
    cache: Any = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""


class PeftEngine(ChatPrompts):
    """InferenceEngine on transformers + PEFT. Construction is cheap; ``warm_up()`` loads.

    No guided decoding and no penalties: requests that need them are refused (400)."""

    features = frozenset({EngineFeature.TOP_LOGPROBS, EngineFeature.LOGIT_BIAS})

    def __init__(self, settings: EngineSettings, *, model: str, work_dir: Path):
        self.settings = settings
        self.model = str(model)
        self.max_model_len = settings.max_model_len
        self.work_dir = Path(work_dir)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peft-engine")
        self._base = None
        self._peft = None  # the PeftModel, once an adapter was loaded
        self._tokenizer = None
        self._eos: set[int] = set()
        self._snapshots: AdapterSnapshots | None = None
        self._inflight = InFlight()
        self._loaded: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._running: set[str] = set()
        self._aborted: set[str] = set()
        self._counts = {"adapter_loads": 0, "adapter_load_failures": 0, "adapter_unloads": 0}

    # -- lifecycle ---------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load the model and tokenizer on the worker thread; raises ServerError."""
        if self._base is not None:
            return
        started = time.perf_counter()
        try:
            await self._run(self._load_model)
        except Exception as exc:
            raise ServerError(f"the PEFT engine failed to load {self.model}: {exc}") from exc
        self.loop = asyncio.get_running_loop()
        self._snapshots = AdapterSnapshots(self.work_dir / "peft-loras")
        log.info("PEFT engine ready model=%s in %.1f s", self.model, time.perf_counter() - started)

    def _load_model(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(self.settings.seed)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        dtype = getattr(torch, self.settings.dtype)
        self._base = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype).eval()
        eos = self._base.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tokenizer.eos_token_id is not None:
            self._eos.add(self._tokenizer.eos_token_id)

    def ready(self) -> bool:
        return self._base is not None

    def stats(self) -> dict[str, float]:
        """Numbers for /metrics: adapters loaded, running requests, load counts."""
        return {"adapters_loaded": len(self._loaded), "requests_running": len(self._running),
                **self._counts}

    async def shutdown(self) -> None:
        self._base = self._peft = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- generation --------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream one chunk per token. Raises InvalidInput (messages too long), NotFound
        (a deleted adapter), InvalidAdapter (PEFT refused it), Unavailable."""
        import torch

        self._require_ready()
        check_logit_bias(request.sampling, len(self._tokenizer))
        ids = self._tokenizer.encode(prompt_text(self, request), add_special_tokens=False)
        room = room_for(len(ids), request.sampling.max_tokens, self.max_model_len)
        key = await self._adapter(request.adapter) if request.adapter else None
        state = _Decode(key, request.sampling, room, torch.tensor([ids]))
        if request.sampling.temperature > 0:
            state.generator = torch.Generator().manual_seed(
                request.sampling.seed if request.sampling.seed is not None else time.time_ns() % 2**31)
        int_id = request.adapter.int_id if request.adapter else None
        self._inflight.add(int_id)
        self._running.add(request.request_id)
        try:
            while True:
                if request.request_id in self._aborted:
                    return
                chunk = await self._run(self._step, state)
                chunk.prompt_tokens, chunk.completion_tokens = len(ids), len(state.tokens)
                yield chunk
                if chunk.finish_reason:
                    return
        except LoragError:
            raise
        except Exception as exc:
            log.error("generation failed request=%s adapter=%s: %s", request.request_id,
                      adapter_label(request.adapter) if request.adapter else "base", exc)
            raise ServerError(f"generation failed: {type(exc).__name__}") from exc
        finally:
            self._inflight.done(int_id)
            self._running.discard(request.request_id)
            self._aborted.discard(request.request_id)

    def _step(self, state: _Decode) -> GenerationChunk:
        """One forward pass and one sampled token (worker thread)."""
        import torch

        model = self._select(state.adapter)
        context = self._peft.disable_adapter() if state.adapter is None and self._peft else nullcontext()
        with torch.inference_mode(), context:
            out = model(input_ids=state.input_ids, past_key_values=state.cache, use_cache=True)
        state.cache = out.past_key_values
        logits = out.logits[0, -1].float()
        if state.sampling.logit_bias:
            logits = logits.clone()  # an inference tensor cannot be changed in place
            for token_id, bias in state.sampling.logit_bias:
                logits[token_id] += bias
        token = _sample(logits, state.sampling, state.generator)
        logprobs = torch.log_softmax(logits, dim=-1)
        state.tokens.append(token)
        state.input_ids = torch.tensor([[token]])
        return self._chunk(state, token, self._scored(logprobs, token, state.sampling))

    def _scored(self, logprobs, token: int, sampling: Sampling) -> TokenLogprob:
        top = []
        if sampling.logprobs and sampling.top_logprobs:
            values, ids = logprobs.topk(sampling.top_logprobs)
            top = [(self._tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]
        return TokenLogprob(self._tokenizer.decode([token]), float(logprobs[token]), tuple(top))

    def _select(self, key: str | None):
        if key is None:
            return self._peft if self._peft is not None else self._base
        self._peft.set_adapter(key)
        return self._peft

    def _chunk(self, state: _Decode, token: int, scored: TokenLogprob) -> GenerationChunk:
        finish = "stop" if token in self._eos else None
        text = self._tokenizer.decode(state.tokens, skip_special_tokens=True)
        for stop in state.sampling.stop:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        if finish is None and len(state.tokens) >= state.max_tokens:
            finish = "length"
        if finish is None and text.endswith("\ufffd"):
            text = state.text  # an incomplete UTF-8 sequence: wait for its next bytes
        delta, state.text = text[len(state.text):], text
        wanted = state.sampling.logprobs
        return GenerationChunk(text=delta, token_ids=[token],
                               logprobs=[scored.logprob] if wanted else [],
                               token_logprobs=[scored] if wanted else [], finish_reason=finish)

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:
            self._aborted.add(request_id)

    # -- adapters ----------------------------------------------------------------------

    async def _adapter(self, ref: AdapterRef) -> str:
        """The PEFT adapter name of ``ref``, loading it on first use (under its lock)."""
        if not (Path(ref.path) / "adapter_config.json").is_file():
            raise NotFound(f"adapter {ref.name!r} version {ref.version} was deleted",
                           param="adapter", code="adapter_not_found")
        key = f"a{ref.int_id}"
        if ref.int_id in self._loaded:
            return key
        async with self._locks.setdefault(ref.int_id, asyncio.Lock()):
            if ref.int_id not in self._loaded:
                await self._load(ref, key)
        return key

    async def _load(self, ref: AdapterRef, key: str) -> None:
        started = time.perf_counter()
        try:
            await self._run(self._load_adapter, key, self._snapshots.path(ref))
        except LoragError:
            raise
        except Exception as exc:
            log.error("adapter load failed tenant=%s adapter=%s version=%s id=%s: %s",
                      ref.tenant_id, ref.name, ref.version, ref.int_id, exc)
            self._counts["adapter_load_failures"] += 1
            raise InvalidAdapter(f"the engine could not load adapter {ref.name!r}: {exc}",
                                 param="adapter") from None
        self._loaded.add(ref.int_id)
        self._counts["adapter_loads"] += 1
        log.info("loaded adapter tenant=%s adapter=%s version=%s id=%s in %.3f s",
                 ref.tenant_id, ref.name, ref.version, ref.int_id, time.perf_counter() - started)

    def _load_adapter(self, key: str, path: Path) -> None:
        if self._peft is not None and key in self._peft.peft_config:
            return
        if self._peft is None:
            from peft import PeftModel

            self._peft = PeftModel.from_pretrained(self._base, str(path), adapter_name=key).eval()
        else:
            self._peft.load_adapter(str(path), adapter_name=key)

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Delete the adapter's weights from the model once its requests have finished."""
        if self._peft is None:
            return
        async with self._locks.setdefault(adapter.int_id, asyncio.Lock()):
            if adapter.int_id not in self._loaded:
                return
            self._loaded.discard(adapter.int_id)
            await self._inflight.wait_idle(adapter.int_id)
            await self._run(self._delete_adapter, f"a{adapter.int_id}")
            self._snapshots.drop(adapter)
        self._counts["adapter_unloads"] += 1
        log.info("unloaded adapter tenant=%s adapter=%s version=%s id=%s", adapter.tenant_id,
                 adapter.name, adapter.version, adapter.int_id)

    def _delete_adapter(self, key: str) -> None:
        if key not in self._peft.peft_config:
            return
        if len(self._peft.peft_config) == 1:
            # PEFT cannot delete its last adapter; keep the layers and never select it.
            return
        self._peft.delete_adapter(key)


def _sample(logits, sampling: Sampling, generator) -> int:
    """Greedy at temperature 0, else temperature + nucleus (top_p) sampling."""
    import torch

    if sampling.temperature <= 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < sampling.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator).item())
