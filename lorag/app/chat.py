"""The chat orchestration: brand -> retrieval -> prompt within the token budget -> engine.

No HTTP here: the server, the CLI and benchmarks drive the same ``ChatService``.

The prompt is the brand's system prompt, then the numbered sources ``[1]..[n]``, then
the conversation, rendered with the model's chat template. A token budget keeps
``prompt + max_tokens <= engine.max_model_len``: the lowest-ranked sources are dropped
first, then the oldest turns; text is never truncated, so no token is ever cut. When
the search finds nothing relevant the model is told so instead of being given noise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable, Sequence

from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationChunk,
                                      GenerationRequest, InferenceEngine, Sampling,
                                      StructuredOutput, TokenLogprob)  # noqa: F401 (for server/)
from lorag.app.ports import AdapterResolver, BrandLookup, Searcher, TargetRouter
from lorag.app.quality.guard import AnswerChecks, GroundingVerdict
from lorag.app.settings import ChatSettings
from lorag.app.tools import Tool, ToolPlan, render_message
from lorag.core.brands import Brand, BrandQuality
from lorag.core.errors import Conflict, InvalidInput, NotFound
from lorag.core.modes import RetrievalMode, parse_mode
from ingest.types import describe_location
from retrieval.filters import Filter
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")
# Search arguments -> the ChatRequest fields they come from.
_RETRIEVAL_FIELDS = {"k": "retrieval.top_k", "mode": "retrieval.mode",
                     "filters": "retrieval.filters", "query": "messages"}

SOURCES_INSTRUCTIONS = (
    "Answer from the numbered sources below. Cite the sources you use with their number "
    "in square brackets, like [1]. If the sources do not contain the answer, say so.")
NOTHING_FOUND = (
    "A search of the documents found nothing relevant to this question. Tell the user "
    "that the documents do not cover it, and do not cite any source.")
NOTHING_FITS = (
    "The documents found for this question did not fit in the context. Answer without "
    "citing sources, and say that you could not consult the documents.")


@dataclass(frozen=True)
class RetrievalOptions:
    """Per-request overrides of the brand's retrieval defaults; None = the brand's."""

    top_k: int | None = None
    mode: RetrievalMode | str | None = None  # checked by ChatService.prepare
    filters: dict | Filter | None = None  # metadata equality, or a Filter tree


@dataclass(frozen=True)
class ChatRequest:
    """One chat turn. ``messages`` are ``{"role", "content"}`` dicts, content a string."""

    brand: str
    messages: Sequence[dict]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    retrieval: RetrievalOptions = RetrievalOptions()
    request_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    routing_key: str | None = None  # sticky split key (user / session); None: first message
    n: int = 1  # answers to generate (choices), each its own engine request
    logprobs: bool = False
    top_logprobs: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    response_format: StructuredOutput | None = None  # JSON output (guided decoding)
    brand_format: bool = True  # without response_format: the brand's default one applies
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # none / auto / required / a function's name; see ToolPlan


@dataclass(frozen=True)
class Citation:
    """Source ``[number]`` as the model was given it."""

    number: int
    document_id: str
    chunk_id: int
    title: str | None
    source: str | None
    score: float
    location: str | None = None  # where in the document: "Warranty > Returns, page 12"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class PreparedChat:
    """Everything decided before generation: the rendered prompt and what it cites."""

    request_id: str
    tenant_id: str
    brand: str
    prompt: str
    prompt_tokens: int
    sampling: Sampling
    adapter: AdapterRef | None
    citations: tuple[Citation, ...]
    retrieved: int  # hits the search returned (before the relevance floor and the budget)
    dropped_turns: int
    retrieval_seconds: float
    sources: tuple[str, ...] = ()  # the text of each citation, as the model was given it
    quality: BrandQuality = BrandQuality()  # the brand's answer checks
    target: str | None = None  # the brand's target that served (None: no router)
    role: str | None = None  # which part of the brand's rollout served it
    # the tenant's chunk store as the search saw it: {"covered", "generation"} (None: no
    # retrieval, or nothing ingested yet); any add raises covered, any delete generation
    index_state: dict | None = None
    template_sha256: str | None = None  # see ChatService.template_sha256
    n: int = 1
    tools: ToolPlan = ToolPlan()  # the tools shown and how the answer is read


@dataclass(frozen=True)
class ChatResult:
    request_id: str
    brand: str
    text: str
    finish_reason: str | None
    citations: tuple[Citation, ...]
    usage: Usage
    grounding: GroundingVerdict | None = None  # None when the brand's guard is off


@dataclass
class _Prompt:
    """The parts of a prompt the budget trims: ranked hits and conversation turns."""

    system: str
    hits: list[SearchHit] | None  # None = retrieval off
    turns: list[list[dict]]

    def messages(self, n_hits: int, first_turn: int) -> list[dict]:
        system = _system_text(self.system, self.hits, n_hits)
        conversation = [m for turn in self.turns[first_turn:] for m in turn]
        return ([{"role": "system", "content": system}] if system else []) + conversation


class ChatService:
    """Joins a tenant's retrieval with its brand's adapter. Safe for concurrent use."""

    def __init__(self, *, brands: BrandLookup, adapters: AdapterResolver, retrieval: Searcher,
                 engine: InferenceEngine, settings: ChatSettings,
                 checks: AnswerChecks | None = None, router: TargetRouter | None = None):
        self.checks = checks  # the brands' grounding guard and output redaction
        self.router = router
        self.brands = brands
        self.adapters = adapters
        self.retrieval = retrieval
        self.engine = engine
        self.settings = settings
        self._chat_template: str | None = None  # the engine's template rendered once

    async def prepare(self, tenant_id: str, request: ChatRequest) -> PreparedChat:
        """Resolve the brand, retrieve and build the prompt within the budget.

        Raises NotFound (param ``model``) for a brand the tenant does not have,
        InvalidInput for bad messages, sampling or retrieval options, or a conversation
        that cannot fit the context even without sources and older turns.
        """
        brand = self._brand(tenant_id, request.brand)
        _check_messages(request.messages)
        max_tokens = self._max_tokens(request.max_tokens)
        plan = ToolPlan.of(request.tools, request.tool_choice)
        request = _with_brand_format(request, brand, plan)
        sampling = self._sampling(request, max_tokens, plan)
        started = time.perf_counter()
        hits, index_state = await self._retrieve(tenant_id, brand, request)
        retrieval_seconds = time.perf_counter() - started
        adapter, target, role = self._route(tenant_id, brand, request)
        system = "\n\n".join(p for p in (_join_system(brand.system_prompt, request.messages),
                                         plan.instructions()) if p)
        prompt = _Prompt(system, self._relevant(hits), _turns(request.messages))
        text, tokens, n_hits, first_turn = self._fit(prompt, max_tokens)
        kept = (prompt.hits or [])[:n_hits]
        citations = tuple(_citation(i + 1, hit) for i, hit in enumerate(kept))
        return PreparedChat(
            request_id=request.request_id, tenant_id=tenant_id, brand=brand.name,
            prompt=text, prompt_tokens=tokens, sampling=sampling,
            adapter=adapter, citations=citations, retrieved=len(hits or []),
            dropped_turns=first_turn, retrieval_seconds=retrieval_seconds,
            sources=tuple(hit.text for hit in kept), quality=brand.quality, target=target,
            role=role, index_state=index_state, template_sha256=self.template_sha256(brand),
            n=request.n, tools=plan)

    async def prepare_completion(self, tenant_id: str, request: ChatRequest) -> PreparedChat:
        """A raw completion (``/v1/completions``): the brand's adapter on the one user
        message's text as it is, no chat template and no system prompt; with retrieval
        on (the request's mode not ``off``), the numbered sources and their instructions
        go before it, as many as fit. Raises as ``prepare`` (param ``prompt`` for a
        prompt that does not fit)."""
        brand = self._brand(tenant_id, request.brand)
        raw = _last_user_text(request.messages)
        max_tokens = self._max_tokens(request.max_tokens)
        sampling = self._sampling(request, max_tokens, ToolPlan())
        started = time.perf_counter()
        hits, index_state = await self._retrieve(tenant_id, brand, request)
        retrieval_seconds = time.perf_counter() - started
        adapter, target, role = self._route(tenant_id, brand, request)
        hits = self._relevant(hits)
        budget = self.engine.max_model_len - max_tokens

        def measure(n_hits: int) -> tuple[str, int]:
            sources = _system_text("", hits, n_hits) if hits is not None else ""
            text = f"{sources}\n\n{raw}" if sources else raw
            return text, self.engine.count_tokens(text)

        n_hits = _largest(lambda n: measure(n)[1] <= budget, 0, len(hits or []))
        if n_hits is None:
            raise InvalidInput(f"the prompt needs {measure(0)[1]} tokens; with max_tokens="
                               f"{max_tokens} that exceeds the context of "
                               f"{self.engine.max_model_len} tokens", param="prompt",
                               code="context_length_exceeded")
        text, tokens = measure(n_hits)
        kept = (hits or [])[:n_hits]
        return PreparedChat(
            request_id=request.request_id, tenant_id=tenant_id, brand=brand.name, prompt=text,
            prompt_tokens=tokens, sampling=sampling, adapter=adapter,
            citations=tuple(_citation(i + 1, hit) for i, hit in enumerate(kept)),
            retrieved=len(hits or []), dropped_turns=0, retrieval_seconds=retrieval_seconds,
            sources=tuple(hit.text for hit in kept), quality=brand.quality, target=target,
            role=role, index_state=index_state, n=request.n)

    def template_sha256(self, brand: Brand) -> str:
        """SHA-256 of what turns a conversation into this brand's prompt: the engine's
        chat template (rendered once over placeholder messages), the brand's system
        prompt and the fixed source instructions. Equal hashes: the same conversation and
        sources give the same prompt."""
        if self._chat_template is None:
            self._chat_template = self.engine.render_chat(
                [{"role": "system", "content": "{system}"},
                 {"role": "user", "content": "{user}"},
                 {"role": "assistant", "content": "{assistant}"},
                 {"role": "user", "content": "{user}"}])
        parts = [self._chat_template, brand.system_prompt or "", SOURCES_INSTRUCTIONS,
                 NOTHING_FOUND, NOTHING_FITS]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    async def generate(self, prepared: PreparedChat, choice: int = 0, *,
                       whole: bool = False) -> AsyncIterator[GenerationChunk]:
        """Stream the engine's chunks of answer ``choice`` (0 .. n-1: each its own engine
        request, a given seed advanced by ``choice``); a consumer that stops early
        (client gone, cancellation) aborts the engine request so its slot is freed.
        ``whole``: the consumer uses the answer only whole (``GenerationRequest.whole``)."""
        sampling = prepared.sampling
        if choice and sampling.seed is not None:
            sampling = replace(sampling, seed=sampling.seed + choice)
        request_id = prepared.request_id if choice == 0 else f"{prepared.request_id}-{choice}"
        request = GenerationRequest(request_id=request_id, prompt=prepared.prompt,
                                    sampling=sampling, adapter=prepared.adapter, whole=whole)
        finished = False
        try:
            async for chunk in self.engine.generate(request):
                finished = chunk.finish_reason is not None
                yield chunk
        finally:
            if not finished:
                await self._abort(prepared, request_id)

    async def complete(self, tenant_id: str, request: ChatRequest) -> ChatResult:
        """Prepare and generate the whole answer (the non-streaming path)."""
        prepared = await self.prepare(tenant_id, request)
        parts: list[str] = []
        last: GenerationChunk | None = None
        async for chunk in self.generate(prepared, whole=True):
            parts.append(chunk.text)
            last = chunk
        text, verdict = await self.check(prepared, "".join(parts), streamed=False)
        return ChatResult(prepared.request_id, prepared.brand, text,
                          last.finish_reason if last else None, prepared.citations,
                          usage_of(prepared, last), verdict)

    async def check(self, prepared: PreparedChat, text: str, *,
                    streamed: bool) -> tuple[str, GroundingVerdict | None]:
        """The brand's checks on a whole answer: the text to send (PII redacted when the
        brand says so; the fallback when ``abstain`` rejects a non-streamed answer) and
        the grounding verdict (None when the guard is off). A stream passes the text it
        sent (already redacted) and gets it back unchanged."""
        if self.checks is None:
            return text, None
        checks, quality = self.checks, prepared.quality
        if not streamed:
            text = await asyncio.to_thread(checks.redact, prepared.tenant_id, quality, text)
        verdict = await asyncio.to_thread(checks.grounding, quality, text, prepared.sources,
                                          streamed=streamed)
        if verdict is not None and verdict.abstained:
            log.info("abstained request=%s tenant=%s brand=%s groundedness=%s",
                     prepared.request_id, prepared.tenant_id, prepared.brand,
                     verdict.groundedness)
            text = quality.fallback
        return text, verdict

    # -- steps -------------------------------------------------------------------------

    def _brand(self, tenant_id: str, name: str) -> Brand:
        try:
            return self.brands.get(tenant_id, name)
        except NotFound:
            raise NotFound(f"model {name!r} not found", param="model") from None

    def _route(self, tenant_id: str, brand: Brand,
               request: ChatRequest) -> tuple[AdapterRef | None, str | None, str | None]:
        """(adapter, target, role): the brand's rollout picks the target when there is a
        router; without one, the brand's adapter's newest version serves."""
        if self.router is None:
            return self._adapter(tenant_id, brand), None, None
        route = self.router.route(tenant_id, brand, request.routing_key, request.messages)
        return route.adapter, route.target, route.role

    def _adapter(self, tenant_id: str, brand: Brand) -> AdapterRef | None:
        if not brand.adapter_name:
            return None
        try:
            return self.adapters.resolve(tenant_id, brand.adapter_name)
        except NotFound:
            raise NotFound(f"the adapter of model {brand.name!r} is missing", param="model",
                           code="adapter_not_found") from None
        except Conflict as exc:  # the engine's LoRA modules narrowed since it was registered
            raise Conflict(f"model {brand.name!r}: {exc.message}", param="model",
                           code=exc.code) from None

    def _max_tokens(self, requested: int | None) -> int:
        max_tokens = self.settings.default_max_tokens if requested is None else requested
        limit = self.engine.max_model_len - 1
        if requested is not None and not 1 <= requested <= limit:
            raise InvalidInput(f"max_tokens must be between 1 and {limit}", param="max_tokens")
        return min(max_tokens, limit)

    def _sampling(self, request: ChatRequest, max_tokens: int, plan: ToolPlan) -> Sampling:
        """Raises InvalidInput naming the request field the engine cannot honour."""
        temperature = (self.settings.default_temperature if request.temperature is None
                       else request.temperature)
        forced = plan.constraint()
        if forced is not None and request.response_format is not None:
            raise InvalidInput("response_format cannot be combined with a forced tool call "
                               "(tool_choice required or a function)", param="response_format")
        sampling = Sampling(
            max_tokens=max_tokens, temperature=temperature, top_p=request.top_p,
            stop=tuple(request.stop), seed=request.seed, logprobs=request.logprobs,
            top_logprobs=request.top_logprobs, presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty, logit_bias=request.logit_bias,
            structured=forced or request.response_format)
        # an engine that declares no features honours none of them (refused, not ignored)
        honoured = getattr(self.engine, "features", frozenset())
        missing = sorted(sampling.features() - honoured, key=lambda f: f.value)
        if missing:
            param = _feature_param(missing[0], request, forced is not None)
            raise InvalidInput(f"{param} is not supported by this server's inference engine "
                               f"({type(self.engine).__name__})", param=param,
                               code="unsupported_parameter")
        return sampling

    async def _retrieve(self, tenant_id: str, brand: Brand, request: ChatRequest
                        ) -> tuple[list[SearchHit] | None, dict | None]:
        """The ranked hits (None when retrieval is off for this request) and the index
        state they were searched at."""
        options = request.retrieval
        mode = parse_mode(options.mode or brand.mode, param="retrieval.mode")
        if mode is RetrievalMode.OFF:
            return None, None
        filters = options.filters if options.filters is not None else brand.filters
        query = _last_user_text(request.messages)

        def search() -> tuple[list[SearchHit], dict | None]:
            hits = self.retrieval.search(tenant_id, query, k=options.top_k or brand.top_k,
                                         mode=mode, filters=filters or None)
            return hits, self.retrieval.index_state(tenant_id)

        try:
            return await asyncio.to_thread(search)
        except InvalidInput as exc:  # name the request's field, not the search argument's
            exc.param = _RETRIEVAL_FIELDS.get(exc.param, exc.param)
            raise

    def _relevant(self, hits: list[SearchHit] | None) -> list[SearchHit] | None:
        """Keep hits that share a content word with the question (lexical match) or reach
        the cosine floor; in every mode, so a hybrid search's fused noise is dropped too."""
        if hits is None:
            return hits
        floor = self.settings.min_dense_score
        return [hit for hit in hits if hit.lexical_match
                or (hit.dense_score is not None and hit.dense_score >= floor)]

    def _fit(self, prompt: _Prompt, max_tokens: int) -> tuple[str, int, int, int]:
        """(text, tokens, sources kept, first turn kept) of the largest prompt that fits.

        Sources go first (lowest-ranked first), then the oldest turns; the last turn is
        always kept. Token counts are monotonic in both, so each is a binary search.
        """
        budget = self.engine.max_model_len - max_tokens
        n_hits = len(prompt.hits or [])
        measure = self._measurer(prompt)
        if measure(n_hits, 0)[1] <= budget:
            return (*measure(n_hits, 0), n_hits, 0)
        kept = _largest(lambda n: measure(n, 0)[1] <= budget, 0, n_hits)
        if kept is not None:
            return (*measure(kept, 0), kept, 0)
        last = len(prompt.turns) - 1
        first = _smallest(lambda t: measure(0, t)[1] <= budget, 0, last)
        if first is None:
            tokens = measure(0, last)[1]
            raise InvalidInput(
                f"the last message needs {tokens} prompt tokens; with max_tokens={max_tokens} "
                f"that exceeds the context of {self.engine.max_model_len} tokens",
                param="messages", code="context_length_exceeded")
        return (*measure(0, first), 0, first)

    def _measurer(self, prompt: _Prompt) -> Callable[[int, int], tuple[str, int]]:
        cache: dict[tuple[int, int], tuple[str, int]] = {}

        def measure(n_hits: int, first_turn: int) -> tuple[str, int]:
            key = (n_hits, first_turn)
            if key not in cache:
                text = self.engine.render_chat(prompt.messages(n_hits, first_turn))
                cache[key] = (text, self.engine.count_tokens(text))
            return cache[key]

        return measure

    async def _abort(self, prepared: PreparedChat, request_id: str) -> None:
        # Shielded: the caller is usually being cancelled, and the abort must still run.
        task = asyncio.ensure_future(self.engine.abort(request_id))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("abort failed request=%s tenant=%s brand=%s", request_id,
                          prepared.tenant_id, prepared.brand)
        else:
            log.info("aborted request=%s tenant=%s brand=%s", request_id,
                     prepared.tenant_id, prepared.brand)


def grounded_messages(system_prompt: str, hits: list[SearchHit] | None,
                      conversation: Sequence[dict]) -> list[dict]:
    """The messages the model is given for ``hits`` (all of them; None = retrieval off),
    before any budget trimming: what ``prepare`` renders when everything fits."""
    prompt = _Prompt(_join_system(system_prompt, conversation), hits, _turns(conversation))
    return prompt.messages(len(hits or []), 0)


def usage_of(prepared: PreparedChat, last: GenerationChunk | None) -> Usage:
    """Token usage from the engine's last chunk (its own counts when it gives them)."""
    if last is None:
        return Usage(prepared.prompt_tokens, 0)
    return Usage(last.prompt_tokens or prepared.prompt_tokens, last.completion_tokens)


def structured_output(response_format: dict | None) -> StructuredOutput | None:
    """OpenAI's ``response_format`` (checked) as the engine's constraint: ``json_object``:
    any JSON object; ``json_schema``: its schema (always strict); ``text`` or None: none."""
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return StructuredOutput()
    if kind == "json_schema":
        return StructuredOutput(response_format["json_schema"]["schema"])
    return None


def _with_brand_format(request: ChatRequest, brand: Brand, plan: ToolPlan) -> ChatRequest:
    """The request with its brand's default response_format when it asked for none (nor
    for plain text, nor forces a tool call, whose arguments are constrained instead)."""
    if request.response_format is not None or not request.brand_format \
            or brand.response_format is None or plan.constraint() is not None:
        return request
    return replace(request, response_format=structured_output(brand.response_format))


def _feature_param(feature: EngineFeature, request: ChatRequest, forced_tool: bool) -> str:
    """The request field that asked for ``feature``."""
    if feature is EngineFeature.STRUCTURED_OUTPUT:
        return "tool_choice" if forced_tool else "response_format"
    if feature is EngineFeature.PENALTIES:
        return "presence_penalty" if request.presence_penalty else "frequency_penalty"
    return feature.value  # logit_bias, top_logprobs: the field's own name


# -- prompt parts ---------------------------------------------------------------------------

def _check_messages(messages: Sequence[dict]) -> None:
    if not messages:
        raise InvalidInput("messages must not be empty", param="messages")
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        if not isinstance(message.get("content"), str):
            raise InvalidInput("content must be a string", param=f"messages[{i}].content")
        if message["role"] == "tool" and (i == 0 or not _follows_tool_calls(messages, i)):
            raise InvalidInput("a tool message must answer a tool call of the assistant "
                               "message before it", param=f"messages[{i}].role")
    if not any(m["role"] == "user" for m in messages):
        raise InvalidInput("messages must contain a user message", param="messages")


def _follows_tool_calls(messages: Sequence[dict], i: int) -> bool:
    """Message ``i`` comes after an assistant message with tool calls (and tools only)."""
    for message in reversed(messages[:i]):
        if message["role"] != "tool":
            return message["role"] == "assistant" and bool(message.get("tool_calls"))
    return False


def _last_user_text(messages: Sequence[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def _join_system(brand_prompt: str, messages: Sequence[dict]) -> str:
    """The brand's system prompt, then any system messages of the request."""
    parts = [brand_prompt] + [m["content"] for m in messages if m["role"] == "system"]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def _turns(messages: Sequence[dict]) -> list[list[dict]]:
    """The conversation split into turns, each starting at a user message."""
    turns: list[list[dict]] = []
    for message in messages:
        if message["role"] == "system":
            continue
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(render_message(message))
    return turns


def _system_text(system: str, hits: list[SearchHit] | None, n_hits: int) -> str:
    if hits is None:
        return system
    if not hits:
        sources = NOTHING_FOUND
    elif n_hits == 0:
        sources = NOTHING_FITS
    else:
        sources = SOURCES_INSTRUCTIONS + "\n\nSources:\n\n" + "\n\n".join(
            _source_text(i + 1, hit) for i, hit in enumerate(hits[:n_hits]))
    return f"{system}\n\n{sources}" if system else sources


def _source_text(number: int, hit: SearchHit) -> str:
    heading = f"[{number}]" + (f" {hit.title}" if hit.title else "")
    location = describe_location(hit.metadata)
    heading += f" ({location})" if location else ""
    return f"{heading}\n{hit.text.strip()}"


def _citation(number: int, hit: SearchHit) -> Citation:
    return Citation(number, hit.document_id, hit.chunk_id, hit.title, hit.source, float(hit.score),
                    describe_location(hit.metadata))


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest n in [low, high] with fits(n), for fits monotonic (true then false)."""
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def _smallest(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest n in [low, high] with fits(n), for fits monotonic (false then true)."""
    if not fits(high):
        return None
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid + 1, high)
    return low
