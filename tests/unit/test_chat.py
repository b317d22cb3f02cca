"""ChatService with fakes: brand resolution, retrieval options, the prompt, citations,
the token budget at its edges, and aborting the engine when the consumer goes away."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import pytest

from lorag.app.chat import NOTHING_FITS, NOTHING_FOUND, ChatRequest, ChatService, RetrievalOptions
from lorag.app.settings import ChatSettings
from lorag.core.errors import Conflict, InvalidInput, NotFound
from server.errors import http_status
from tests.unit.chat_fakes import (FakeAdapters, FakeBrands, FakeEngine, FakeRetrieval,
                                   default_brands, hit, make_brand)


@dataclass
class Setup:
    brands: dict = field(default_factory=default_brands)
    hits: list = field(default_factory=lambda: [hit(i) for i in range(1, 6)])
    max_model_len: int = 400

    def build(self) -> tuple[ChatService, FakeRetrieval, FakeEngine]:
        retrieval = FakeRetrieval(self.hits)
        engine = FakeEngine(self.max_model_len)
        service = ChatService(brands=FakeBrands(self.brands), adapters=FakeAdapters(),
                              retrieval=retrieval, engine=engine,
                              settings=ChatSettings(default_max_tokens=50))
        return service, retrieval, engine


def ask(text: str = "what is w1?", brand: str = "support", **kwargs) -> ChatRequest:
    return ChatRequest(brand=brand, messages=[{"role": "user", "content": text}], **kwargs)


def run(coro):
    return asyncio.run(coro)


def test_prompt_has_system_prompt_numbered_sources_and_conversation():
    service, retrieval, engine = Setup().build()
    prepared = run(service.prepare("acme", ask(retrieval=RetrievalOptions(top_k=3))))
    assert prepared.prompt.startswith("<system> You are Acme's assistant.")
    for n in (1, 2, 3):
        assert f"[{n}] Title {n}\nw{n}" in prepared.prompt
    assert "[4]" not in prepared.prompt
    assert prepared.prompt.endswith("<user> what is w1? <assistant>")
    assert prepared.prompt_tokens == engine.count_tokens(prepared.prompt)
    assert retrieval.calls == [dict(tenant="acme", query="what is w1?", k=3, mode=None, filters=None)]


def test_citations_match_the_numbers_given_to_the_model():
    service, _, _ = Setup().build()
    prepared = run(service.prepare("acme", ask()))
    assert [c.number for c in prepared.citations] == [1, 2, 3, 4, 5]
    for citation in prepared.citations:
        expected = hit(citation.number)
        assert (citation.document_id, citation.chunk_id, citation.title, citation.source) == (
            expected.document_id, expected.chunk_id, expected.title, expected.source)
        assert citation.score == pytest.approx(expected.score)
        assert f"[{citation.number}] {citation.title}\n{expected.text}" in prepared.prompt


def test_citations_and_sources_name_the_chunks_place_in_its_document():
    located = [replace(hit(1), metadata={"section": "Warranty > Returns", "page": 12}),
               replace(hit(2), metadata={"slide": 4, "lang": "en"}), hit(3)]
    service, _, _ = Setup(hits=located).build()
    prepared = run(service.prepare("acme", ask()))
    assert [c.location for c in prepared.citations] == ["Warranty > Returns, page 12", "slide 4",
                                                         None]
    assert "[1] Title 1 (Warranty > Returns, page 12)\nw1" in prepared.prompt
    assert "[3] Title 3\nw3" in prepared.prompt


def test_brand_defaults_apply_and_request_overrides_them():
    service, retrieval, _ = Setup().build()
    run(service.prepare("acme", ask(brand="plain")))
    run(service.prepare("acme", ask(brand="plain", retrieval=RetrievalOptions(
        top_k=1, mode="dense", filters={"lang": "fr"}))))
    assert retrieval.calls[0] | {"query": None} == dict(
        tenant="acme", query=None, k=2, mode="lexical", filters={"lang": "en"})
    assert retrieval.calls[1] | {"query": None} == dict(
        tenant="acme", query=None, k=1, mode="dense", filters={"lang": "fr"})


@pytest.mark.parametrize("tenant,brand", [("other", "support"), ("acme", "secret"), ("acme", "nope")])
def test_brand_of_another_tenant_or_unknown_is_not_found_on_model(tenant, brand):
    service, retrieval, _ = Setup().build()
    with pytest.raises(NotFound) as err:
        run(service.prepare(tenant, ask(brand=brand)))
    assert err.value.param == "model"
    assert "secret" not in err.value.message or brand == "secret"
    assert retrieval.calls == []


def test_adapter_of_the_brand_reaches_the_engine():
    service, _, engine = Setup().build()
    result = run(service.complete("acme", ask()))
    assert engine.requests[0].adapter.name == "voice"
    assert engine.requests[0].adapter.tenant_id == "acme"
    assert result.text == "Hello there"
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 2
    assert result.usage.prompt_tokens == engine.count_tokens(engine.requests[0].prompt)


def test_brand_without_adapter_uses_the_base_model():
    service, _, engine = Setup().build()
    run(service.complete("acme", ask(brand="plain")))
    assert engine.requests[0].adapter is None


@pytest.mark.parametrize("adapter, error, code, status, says", [
    ("gone", NotFound, "adapter_not_found", 404, "missing"),  # deleted
    ("narrowed", Conflict, "adapter_not_served", 409, "v_proj"),  # engine's modules narrowed
])
def test_an_adapter_the_engine_cannot_serve_fails_on_model(adapter, error, code, status, says):
    setup = Setup()
    setup.brands[("acme", "broken")] = make_brand("broken", adapter_name=adapter)
    service, _, engine = setup.build()
    with pytest.raises(error) as err:
        run(service.prepare("acme", ask(brand="broken")))
    assert (err.value.param, err.value.code, http_status(err.value)[0]) == ("model", code, status)
    assert says in err.value.message and engine.requests == []


def test_retrieval_off_gives_no_sources_and_no_search():
    service, retrieval, _ = Setup().build()
    prepared = run(service.prepare("acme", ask(retrieval=RetrievalOptions(mode="off"))))
    assert retrieval.calls == []
    assert prepared.citations == ()
    assert "[1]" not in prepared.prompt and NOTHING_FOUND not in prepared.prompt


def test_nothing_found_tells_the_model_so():
    setup = Setup(hits=[])
    service, _, _ = setup.build()
    prepared = run(service.prepare("acme", ask()))
    assert NOTHING_FOUND in prepared.prompt
    assert prepared.citations == ()


def test_hits_under_the_floor_are_shown_only_when_they_share_a_word_with_the_question():
    setup = Setup(hits=[hit(1, score=0.9), hit(2, score=0.05), hit(3, score=0.1, lexical=True)])
    service, _, _ = setup.build()
    prepared = run(service.prepare("acme", ask()))  # the default mode: hybrid
    assert [c.document_id for c in prepared.citations] == ["doc-1", "doc-3"]


def test_dense_hits_under_the_relevance_floor_are_not_shown():
    setup = Setup(hits=[hit(1, score=0.9), hit(2, score=0.05)])
    service, _, _ = setup.build()
    prepared = run(service.prepare("acme", ask(retrieval=RetrievalOptions(mode="dense"))))
    assert [c.document_id for c in prepared.citations] == ["doc-1"]
    nothing = Setup(hits=[hit(2, score=0.05)]).build()[0]
    prepared = run(nothing.prepare("acme", ask(retrieval=RetrievalOptions(mode="dense"))))
    assert NOTHING_FOUND in prepared.prompt and prepared.citations == ()


def test_client_system_messages_follow_the_brand_prompt():
    service, _, _ = Setup().build()
    request = ChatRequest(brand="support", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    prepared = run(service.prepare("acme", request))
    assert prepared.prompt.startswith("<system> You are Acme's assistant.\n\nBe brief.\n\n")
    assert prepared.prompt.count("<system>") == 1


# -- the token budget ---------------------------------------------------------------------

def _tokens_with(service: ChatService, request: ChatRequest, n_hits: int) -> int:
    """Prompt tokens when exactly the first ``n_hits`` sources fit (via a huge context)."""
    engine = service.engine
    saved, engine.max_model_len = engine.max_model_len, 10**6
    try:
        opts = RetrievalOptions(top_k=n_hits) if n_hits else RetrievalOptions(mode="off")
        return run(service.prepare("acme", ChatRequest(
            brand=request.brand, messages=request.messages, max_tokens=request.max_tokens,
            retrieval=opts))).prompt_tokens
    finally:
        engine.max_model_len = saved


@pytest.mark.parametrize("slack,kept", [(0, 5), (-1, 4)])
def test_budget_edge_all_sources_fit_exactly_or_the_last_one_goes(slack, kept):
    service, _, engine = Setup().build()
    request = ask(max_tokens=10)
    full = _tokens_with(service, request, 5)
    engine.max_model_len = full + 10 + slack
    prepared = run(service.prepare("acme", request))
    assert len(prepared.citations) == kept
    assert [c.number for c in prepared.citations] == list(range(1, kept + 1))
    assert prepared.prompt_tokens + prepared.sampling.max_tokens <= engine.max_model_len
    assert prepared.prompt_tokens == engine.count_tokens(prepared.prompt)


def test_budget_drops_lowest_ranked_sources_first():
    service, _, engine = Setup().build()
    request = ask(max_tokens=10)
    engine.max_model_len = _tokens_with(service, request, 2) + 10
    prepared = run(service.prepare("acme", request))
    assert [c.document_id for c in prepared.citations] == ["doc-1", "doc-2"]
    assert "w3" not in prepared.prompt


def _conversation(turns: int) -> list[dict]:
    messages = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"question{i} " * 5},
                     {"role": "assistant", "content": f"answer{i} " * 5}]
    return messages + [{"role": "user", "content": "last question"}]


def test_budget_drops_all_sources_then_oldest_turns_never_the_last():
    service, _, engine = Setup().build()
    request = ChatRequest(brand="support", messages=_conversation(3), max_tokens=10)
    off = ChatRequest(brand="support", messages=request.messages, max_tokens=10,
                      retrieval=RetrievalOptions(mode="off"))
    no_sources_all_turns = run(service.prepare("acme", off)).prompt_tokens + len(NOTHING_FITS.split())
    engine.max_model_len = no_sources_all_turns - 15 + 10  # one and a half turns too many
    prepared = run(service.prepare("acme", request))
    assert prepared.citations == ()
    assert NOTHING_FITS in prepared.prompt
    assert "question0" not in prepared.prompt and "answer0" not in prepared.prompt
    assert "last question" in prepared.prompt
    assert prepared.dropped_turns == 2  # 12 tokens a turn, 15 too many
    assert "question2" in prepared.prompt
    assert prepared.prompt_tokens + 10 <= engine.max_model_len
    # whole turns are dropped: no assistant answer without its question
    for i in range(3):
        assert ("question%d" % i in prepared.prompt) == ("answer%d" % i in prepared.prompt)


def test_last_message_that_cannot_fit_is_a_400_on_messages():
    service, _, engine = Setup().build()
    engine.max_model_len = 40
    with pytest.raises(InvalidInput) as err:
        run(service.prepare("acme", ask("word " * 60, max_tokens=5)))
    assert err.value.param == "messages"
    assert err.value.code == "context_length_exceeded"


@pytest.mark.parametrize("max_tokens", [0, -1, 400, 10_000])
def test_max_tokens_out_of_range_names_max_tokens(max_tokens):
    service, _, _ = Setup().build()
    with pytest.raises(InvalidInput) as err:
        run(service.prepare("acme", ask(max_tokens=max_tokens)))
    assert err.value.param == "max_tokens"


def test_default_max_tokens_is_reserved():
    service, _, _ = Setup().build()
    prepared = run(service.prepare("acme", ask()))
    assert prepared.sampling.max_tokens == 50


@pytest.mark.parametrize("messages,param", [
    ([], "messages"),
    ([{"role": "assistant", "content": "hi"}], "messages"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}], "messages[1].role"),
    ([{"role": "user", "content": None}], "messages[0].content"),
])
def test_bad_messages_name_the_field(messages, param):
    service, _, _ = Setup().build()
    with pytest.raises(InvalidInput) as err:
        run(service.prepare("acme", ChatRequest(brand="support", messages=messages)))
    assert err.value.param == param


# -- generation and abort -------------------------------------------------------------------

def test_consumer_that_stops_early_aborts_the_engine_request():
    service, _, engine = Setup().build()

    async def first_chunk_only():
        prepared = await service.prepare("acme", ask())
        stream = service.generate(prepared)
        async for _ in stream:
            break
        await stream.aclose()
        return prepared.request_id

    request_id = run(first_chunk_only())
    assert engine.aborted == [request_id]


def test_cancelled_generation_aborts_the_engine_request():
    service, _, engine = Setup().build()
    engine.reply = ("a",) * 1000

    async def cancel_midway():
        prepared = await service.prepare("acme", ask())

        async def consume():
            async for _ in service.generate(prepared):
                await asyncio.sleep(0.001)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return prepared.request_id

    request_id = run(cancel_midway())
    assert engine.aborted == [request_id]


def test_finished_generation_is_not_aborted():
    service, _, engine = Setup().build()
    run(service.complete("acme", ask()))
    assert engine.aborted == []


def test_search_errors_name_the_request_field():
    class Refusing(FakeRetrieval):
        def search(self, tenant, query, **kwargs):
            raise InvalidInput("bad filter key", param="filters")

    service, _, _ = Setup().build()
    service.retrieval = Refusing([])
    with pytest.raises(InvalidInput) as err:
        run(service.prepare("acme", ask(retrieval=RetrievalOptions(filters={"bad key": 1}))))
    assert err.value.param == "retrieval.filters"


def test_grounded_messages_are_what_prepare_renders_when_everything_fits():
    from lorag.app.chat import grounded_messages

    service, _, engine = Setup().build()
    request = ask(retrieval=RetrievalOptions(top_k=3))
    prepared = run(service.prepare("acme", request))
    messages = grounded_messages("You are Acme's assistant.", [hit(i) for i in (1, 2, 3)],
                                 request.messages)
    assert engine.render_chat(messages) == prepared.prompt


def test_prepared_chat_names_the_index_state_and_prompt_template():
    service, retrieval, engine = Setup().build()
    first = run(service.prepare("acme", ask()))
    assert first.index_state == {"covered": 5, "generation": 0}
    assert len(first.template_sha256) == 64
    again = run(service.prepare("acme", ask("another question entirely")))
    assert again.template_sha256 == first.template_sha256  # the question is not template
    retrieval.state = {"covered": 5, "generation": 1}  # a delete since
    assert run(service.prepare("acme", ask())).index_state == {"covered": 5, "generation": 1}
    off = run(service.prepare("acme", ask(retrieval=RetrievalOptions(mode="off"))))
    assert off.index_state is None  # nothing was searched
    other_brand = run(service.prepare("acme", ask(brand="plain")))
    assert other_brand.template_sha256 != first.template_sha256  # another system prompt
    service.brands.brands["acme", "support"] = replace(
        service.brands.brands["acme", "support"], system_prompt="You are Acme's new voice.")
    assert run(service.prepare("acme", ask())).template_sha256 != first.template_sha256


def test_the_template_hash_follows_the_engines_chat_template():
    service, _, engine = Setup().build()
    before = run(service.prepare("acme", ask())).template_sha256
    changed, _, changed_engine = Setup().build()
    changed_engine.render_chat = lambda messages: "|".join(m["content"] for m in messages)
    assert run(changed.prepare("acme", ask())).template_sha256 != before


def test_only_a_non_streamed_reply_asks_the_engine_for_its_answer_whole():
    """GenerationRequest.whole: complete() sets it (an engine across processes may then
    send the chunks together), a stream does not."""
    service, _, engine = Setup().build()

    async def complete_then_stream():
        await service.complete("acme", ask())
        prepared = await service.prepare("acme", ask())
        return [chunk async for chunk in service.generate(prepared)]

    assert run(complete_then_stream())
    assert [request.whole for request in engine.requests] == [True, False]
