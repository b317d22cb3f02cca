"""The conformance table every InferenceEngine passes (on the tiny model).

Mix ``EngineConformance`` into a test class of a module that provides a module-scoped
``kit`` fixture returning an ``EngineKit``: a warmed engine, a function running a
coroutine on the engine's event loop, and refs of two adapters ``a`` and ``b``
registered on the tiny model. Helpers ``collect`` and ``greedy`` are shared with the
engine-specific tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from adapters.engines.protocol import (AdapterRef, EngineFeature, GenerationRequest,
                                      InferenceEngine, Sampling, StructuredOutput, TokenLogprob)
from lorag.core.errors import InvalidInput, NotFound

MESSAGES = ({"role": "user", "content": "What is the capital of France?"},)
# A schema whose JSON is short whatever a random model prefers.
SHORT_SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                                 "sure": {"type": "boolean"}},
                "required": ["answer", "sure"], "additionalProperties": False}
BIASED_TOKEN = 100  # an ordinary token of the tiny model's vocabulary
_ids = itertools.count()


@dataclass
class EngineKit:
    engine: InferenceEngine
    run: Callable[[Any], Any]  # runs a coroutine on the engine's loop
    refs: dict[str, AdapterRef]  # "a", "b"


@dataclass
class Result:
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    scored: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    chunks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def request(adapter: AdapterRef | None = None, *, messages=MESSAGES, prompt=None,
            **sampling) -> GenerationRequest:
    sampling.setdefault("max_tokens", 16)
    return GenerationRequest(f"test-{next(_ids)}", prompt=prompt,
                             messages=None if prompt is not None else messages,
                             sampling=Sampling(**sampling), adapter=adapter)


async def collect(engine: InferenceEngine, req: GenerationRequest) -> Result:
    result = Result()
    async for chunk in engine.generate(req):
        result.text += chunk.text
        result.tokens += chunk.token_ids
        result.logprobs += chunk.logprobs
        result.scored += chunk.token_logprobs
        result.chunks += 1
        result.finish_reason = chunk.finish_reason
        result.prompt_tokens, result.completion_tokens = chunk.prompt_tokens, chunk.completion_tokens
    return result


def greedy(kit: EngineKit, adapter: AdapterRef | None = None, **sampling) -> Result:
    return kit.run(collect(kit.engine, request(adapter, **sampling)))


class EngineConformance:
    """Behaviour every engine must show; see the module docstring for the ``kit`` fixture."""

    def test_ready_and_context(self, kit):
        assert kit.engine.ready() and kit.engine.max_model_len >= 256

    def test_render_chat_uses_the_model_template(self, kit):
        text = kit.engine.render_chat([{"role": "user", "content": "hi"}])
        assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        assert kit.engine.count_tokens(text) > kit.engine.count_tokens("hi") > 0

    def test_greedy_is_deterministic(self, kit):
        assert greedy(kit).tokens == greedy(kit).tokens

    def test_base_and_two_adapters_give_three_outputs(self, kit):
        outputs = {tuple(greedy(kit, ref).tokens) for ref in (None, kit.refs["a"], kit.refs["b"])}
        assert len(outputs) == 3

    def test_streams_deltas_with_usage(self, kit):
        result = greedy(kit, kit.refs["a"], max_tokens=12)
        prompt = kit.engine.render_chat(list(MESSAGES))
        assert result.chunks > 1 and result.finish_reason in ("stop", "length")
        assert result.completion_tokens == len(result.tokens) <= 12
        assert result.prompt_tokens == kit.engine.count_tokens(prompt)

    def test_logprobs_only_when_asked(self, kit):
        plain = greedy(kit, kit.refs["b"])
        scored = greedy(kit, kit.refs["b"], logprobs=True)
        assert plain.logprobs == [] and scored.tokens == plain.tokens
        assert len(scored.logprobs) == len(scored.tokens) and all(lp <= 0 for lp in scored.logprobs)

    def test_declared_sampling_features_are_honoured(self, kit):
        features = kit.engine.features
        if EngineFeature.LOGIT_BIAS in features:
            biased = greedy(kit, max_tokens=4, logit_bias=((BIASED_TOKEN, 100.0),))
            assert biased.tokens == [BIASED_TOKEN] * 4
        if EngineFeature.TOP_LOGPROBS in features:
            scored = greedy(kit, kit.refs["a"], max_tokens=6, logprobs=True, top_logprobs=3)
            assert len(scored.scored) == len(scored.tokens) == 6
            for token in scored.scored:
                alternatives = [lp for _, lp in token.top]
                assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
                assert token.top[0][0] == token.token  # greedy: the most likely token
                assert abs(token.logprob - alternatives[0]) < 1e-4
        if EngineFeature.STRUCTURED_OUTPUT in features:
            guided = greedy(kit, kit.refs["b"], max_tokens=40,
                            structured=StructuredOutput(SHORT_SCHEMA))
            value = json.loads(guided.text)
            assert value["answer"] in ("yes", "no") and isinstance(value["sure"], bool)
            assert greedy(kit, max_tokens=8, structured=StructuredOutput()).text.startswith("{")
        if EngineFeature.PENALTIES in features:
            assert greedy(kit, max_tokens=4, presence_penalty=1.0, frequency_penalty=1.0).tokens

    def test_max_tokens_finishes_with_length(self, kit):
        result = greedy(kit, max_tokens=3)
        assert (len(result.tokens), result.finish_reason) == (3, "length")

    def test_stop_string_cuts_the_text(self, kit):
        full = greedy(kit, kit.refs["a"], max_tokens=24).text
        cut = next((i for i, c in enumerate(full) if i > 0 and c.isalpha() and c not in full[:i]), None)
        if cut is None:
            pytest.skip("greedy output has no usable stop character")
        result = greedy(kit, kit.refs["a"], max_tokens=24, stop=(full[cut],))
        assert (result.text, result.finish_reason) == (full[:cut], "stop")

    def test_prompt_as_text(self, kit):
        prompt = kit.engine.render_chat(list(MESSAGES))
        as_text = kit.run(collect(kit.engine, request(prompt=prompt)))
        assert as_text.tokens == greedy(kit).tokens

    def test_prompt_too_long_names_messages(self, kit):
        long = [{"role": "user", "content": "word " * (2 * kit.engine.max_model_len)}]
        with pytest.raises(InvalidInput) as err:
            kit.run(collect(kit.engine, request(messages=tuple(long))))
        assert err.value.param == "messages"

    def test_prompt_and_messages_exclusive(self, kit):
        both = GenerationRequest("both", prompt="hi", messages=MESSAGES)
        with pytest.raises(InvalidInput):
            kit.run(collect(kit.engine, both))
        with pytest.raises(InvalidInput):
            kit.run(collect(kit.engine, GenerationRequest("neither")))

    def test_deleted_adapter_is_not_found(self, kit, tmp_path):
        gone = AdapterRef("acme", "gone", 1, 10_000, tmp_path / "deleted")
        with pytest.raises(NotFound) as err:
            greedy(kit, gone)
        assert err.value.param == "adapter"
        assert greedy(kit, kit.refs["a"]).tokens  # still serving

    def test_interleaved_requests_get_their_own_adapter(self, kit):
        refs = [None, kit.refs["a"], kit.refs["b"]] * 3
        solo = {id(r): greedy(kit, r).tokens for r in refs}

        async def together():
            return await asyncio.gather(*(collect(kit.engine, request(r)) for r in refs))

        for ref, result in zip(refs, kit.run(together())):
            assert result.tokens == solo[id(ref)]

    def test_abort_ends_the_stream_and_frees_the_engine(self, kit):
        req = request(kit.refs["a"], max_tokens=200)

        async def abort_early():
            seen = 0
            async for chunk in kit.engine.generate(req):
                seen += len(chunk.token_ids)
                if seen == 2:
                    await kit.engine.abort(req.request_id)
            return seen

        assert kit.run(abort_early()) < 200
        assert greedy(kit, kit.refs["a"]).tokens == greedy(kit, kit.refs["a"]).tokens

    def test_closing_the_stream_early_is_safe(self, kit):
        async def close_early():
            stream = kit.engine.generate(request(kit.refs["b"], max_tokens=100))
            async for _ in stream:
                break
            await stream.aclose()

        kit.run(close_early())
        assert len(greedy(kit, kit.refs["b"], max_tokens=5).tokens) == 5

    def test_stats_for_metrics(self, kit):
        greedy(kit, kit.refs["a"], max_tokens=2)
        stats = kit.engine.stats()
        assert stats["adapters_loaded"] >= 1 and stats["adapter_loads"] >= 1
        assert stats["requests_running"] == 0

    def test_removed_adapter_reloads_on_next_use(self, kit):
        before = greedy(kit, kit.refs["b"]).tokens
        kit.run(kit.engine.remove_adapter(kit.refs["b"]))
        assert greedy(kit, kit.refs["b"]).tokens == before


def adapter_ref(version, path: Path | None = None) -> AdapterRef:
    """An AdapterRef of a stored AdapterVersion (optionally pointing elsewhere)."""
    return AdapterRef(version.tenant_id, version.name, version.version, version.id,
                      path or version.path)


@dataclass
class Stack:
    """A container on the tiny model with its engine warmed on a private event loop."""

    app: Any
    loop: asyncio.AbstractEventLoop
    kit: EngineKit

    def close(self) -> None:
        self.loop.run_until_complete(self.app.engine.shutdown())
        self.app.close()
        self.loop.close()


def start_stack(backend: str, root: Path, tiny_model: Path, make_lora, **engine) -> Stack:
    """Tenant ``acme`` with adapters ``a`` (seed 1) and ``b`` (seed 2), engine warmed."""
    from adapters.settings import AdapterSettings, EngineSettings
    from lorag.app.settings import Settings
    from lorag.app.container import Lorag

    engine = {"max_model_len": 512, "max_loras": 2, "max_cpu_loras": 2, "max_lora_rank": 16,
              "kv_cache_bytes": 256 * 2**20, "max_num_seqs": 16, **engine}
    settings = Settings(data_dir=root, environment="test",
                        engine=EngineSettings(backend=backend, model=str(tiny_model), **engine),
                        adapters=AdapterSettings(max_unpacked_bytes=16 * 2**20))
    app = Lorag(settings)
    app.tenants.create("acme")
    refs = {name: app.adapters.register("acme", name, make_lora(seed=seed)).ref()
            for name, seed in (("a", 1), ("b", 2))}
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app.engine.warm_up())
    return Stack(app, loop, EngineKit(app.engine, loop.run_until_complete, refs))
