"""The InferenceEngine Protocol and the values it takes and yields.

Implementations (registered by name in ``ENGINES``): ``vllm`` (in-process AsyncLLM with
a LoRARequest per request), ``peft`` (transformers + PEFT reference engine) and
``remote`` (a fleet of stock vLLM OpenAI servers, ``adapters/engines/remote/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import AsyncIterator, Protocol, runtime_checkable

from lorag.core.plugins import Registry


@dataclass(frozen=True)
class AdapterRef:
    """A validated adapter version as an engine sees it. ``int_id`` is never reused for
    different weights, so an engine may cache by it."""

    tenant_id: str
    name: str
    version: int
    int_id: int
    path: Path


class EngineFeature(str, Enum):
    """Sampling options an engine may or may not honour (``InferenceEngine.features``);
    a request that needs one the engine lacks is refused before generation."""

    STRUCTURED_OUTPUT = "structured_output"  # Sampling.structured: guided JSON decoding
    PENALTIES = "penalties"  # Sampling.presence_penalty / frequency_penalty
    LOGIT_BIAS = "logit_bias"  # Sampling.logit_bias
    TOP_LOGPROBS = "top_logprobs"  # Sampling.top_logprobs > 0


@dataclass(frozen=True)
class StructuredOutput:
    """Constrain the completion to JSON: matching ``schema``, or any JSON object when
    ``schema`` is None."""

    schema: dict | None = None


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0  # alternatives per token (with ``logprobs``), most likely first
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    structured: StructuredOutput | None = None

    def features(self) -> frozenset[EngineFeature]:
        """The optional engine features these settings need."""
        needed = {EngineFeature.STRUCTURED_OUTPUT: self.structured is not None,
                  EngineFeature.PENALTIES: bool(self.presence_penalty or self.frequency_penalty),
                  EngineFeature.LOGIT_BIAS: bool(self.logit_bias),
                  EngineFeature.TOP_LOGPROBS: self.logprobs and self.top_logprobs > 0}
        return frozenset(feature for feature, used in needed.items() if used)


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt: str | None = None
    messages: tuple[dict, ...] | None = None
    sampling: Sampling = Sampling()
    adapter: AdapterRef | None = None
    # the caller uses the answer only whole (a non-streamed reply): an engine whose chunks
    # cross processes may hold them back and send them together (the Ray engine replica)
    whole: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and, when asked, the most likely
    alternatives at its position (``(token text, logprob)``, most likely first)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class GenerationChunk:
    """New text since the last chunk; the last chunk has ``finish_reason`` set."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    token_logprobs: list[TokenLogprob] = field(default_factory=list)  # with Sampling.logprobs
    finish_reason: str | None = None  # "stop" | "length" | None while streaming
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class InferenceEngine(Protocol):
    max_model_len: int
    features: frozenset[EngineFeature]  # the optional sampling features it honours

    async def warm_up(self) -> None:
        """Load the model; after it returns, ``ready()`` is True. Raises ServerError."""

    def ready(self) -> bool: ...

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt the model's chat template makes of ``messages`` (generation prompt added)."""

    def count_tokens(self, text: str) -> int: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the completion. Raises InvalidInput (e.g. prompt too long, param named),
        NotFound for an adapter that was removed, Unavailable when not warmed up."""

    async def abort(self, request_id: str) -> None:
        """Stop a request (client went away) and free its slot."""

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Drop a deleted or superseded adapter version from the engine's caches."""

    async def shutdown(self) -> None: ...


ENGINES: Registry[InferenceEngine] = Registry("engine")
