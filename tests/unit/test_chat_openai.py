"""OpenAI's chat parameters over fakes: tool plans and how answers are read, refusal of
what the engine cannot honour (400 naming the field), tool turns in the prompt, ``n``
answers, raw completions and embeddings through the HTTP layer."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters.engines.protocol import EngineFeature
from lorag.app.chat import ChatRequest, ChatService, RetrievalOptions, StructuredOutput
from lorag.app.settings import Settings
from lorag.app.tools import Tool, ToolMode, ToolPlan, render_message
from lorag.core.errors import InvalidInput
from retrieval.embedders import FakeEmbedder
from server.app import create_app
from tests.unit.chat_fakes import FakeContainer
from tests.unit.test_chat import Setup, ask, run

WEATHER = Tool("get_weather", "The weather.", {"type": "object", "properties": {
    "city": {"enum": ["Paris", "London"]}}, "required": ["city"]})
CLOCK = Tool("get_time")


# -- tool plans -------------------------------------------------------------------------------

@pytest.mark.parametrize("tools,choice,param", [
    ((), "required", "tool_choice"),
    ((), "auto", "tool_choice"),
    ((WEATHER,), "get_time", "tool_choice"),
    ((WEATHER, WEATHER), None, "tools"),
])
def test_tool_plans_refuse_choices_without_their_tools(tools, choice, param):
    with pytest.raises(InvalidInput) as error:
        ToolPlan.of(tools, choice)
    assert error.value.param == param


def test_tool_plan_modes_constraints_and_reading():
    assert ToolPlan.of((), None).mode is ToolMode.NONE
    assert ToolPlan.of((WEATHER,), None).mode is ToolMode.AUTO
    named = ToolPlan.of((WEATHER, CLOCK), "get_weather")
    assert named.constraint().schema == WEATHER.parameters
    assert "get_weather" in named.instructions() and "get_time" not in named.instructions()
    content, calls = named.read('{"city":"Paris"}')
    assert content is None and [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city":"Paris"}')]
    assert named.read('{"city":"Pa') == ('{"city":"Pa', [])  # cut short: stays text
    required = ToolPlan.of((WEATHER, CLOCK), "required")
    names = [c["properties"]["name"]["enum"] for c in required.constraint().schema["items"]["anyOf"]]
    assert names == [["get_weather"], ["get_time"]]
    _, calls = required.read('[{"name":"get_time","arguments":{}},{"name":"get_weather","arguments":{"city":"London"}}]')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_time", {}), ("get_weather", {"city": "London"})]
    assert required.read('[{"name": "get_time"}]') == ('[{"name": "get_time"}]', [])
    assert required.read("Hello") == ("Hello", [])
    auto = ToolPlan.of((WEATHER,), "auto")
    assert auto.constraint() is None
    content, calls = auto.read('Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    assert content == "Let me check." and calls[0].name == "get_weather"
    assert auto.read('<tool_call>{"name": "nope"}</tool_call>')[1] == []  # not a given tool
    assert ToolPlan.of((WEATHER,), "none").instructions() == ""


def test_tool_turns_render_for_any_template():
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    assistant = render_message({"role": "assistant", "content": "", "tool_calls": [call]})
    assert assistant["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    tool = render_message({"role": "tool", "content": "21 C", "tool_call_id": "call_1"})
    assert tool == {"role": "user", "content": "<tool_response>\n21 C\n</tool_response>"}


# -- the chat service -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,param", [
    (dict(response_format=StructuredOutput()), "response_format"),
    (dict(tools=(WEATHER,), tool_choice="required"), "tool_choice"),
    (dict(presence_penalty=0.5), "presence_penalty"),
    (dict(frequency_penalty=-0.5), "frequency_penalty"),
    (dict(logit_bias=((3, 5.0),)), "logit_bias"),
    (dict(logprobs=True, top_logprobs=2), "top_logprobs"),
])
def test_what_the_engine_cannot_honour_is_refused_naming_the_field(kwargs, param):
    service, _, engine = Setup().build()
    engine.features = frozenset()
    with pytest.raises(InvalidInput) as error:
        run(service.prepare("acme", ask(**kwargs)))
    assert error.value.param == param and error.value.code == "unsupported_parameter"
    assert run(service.prepare("acme", ask(logprobs=True)))  # plain logprobs: every engine


def test_sampling_carries_the_openai_parameters_and_tools_reach_the_prompt():
    service, _, _ = Setup().build()
    prepared = run(service.prepare("acme", ask(
        presence_penalty=0.5, logit_bias=((3, 5.0),), tools=(WEATHER,), tool_choice="get_weather")))
    assert prepared.sampling.presence_penalty == 0.5 and prepared.sampling.logit_bias == ((3, 5.0),)
    assert prepared.sampling.structured == StructuredOutput(WEATHER.parameters)
    assert "<tools>" in prepared.prompt and "get_weather" in prepared.prompt
    with pytest.raises(InvalidInput) as error:
        run(service.prepare("acme", ask(response_format=StructuredOutput(), tools=(WEATHER,),
                                        tool_choice="required")))
    assert error.value.param == "response_format"


def test_a_tool_result_follows_its_call_and_retrieval_still_asks_the_user_question():
    service, retrieval, _ = Setup().build()
    call = {"id": "call_1", "name": "get_weather", "arguments": "{}"}
    messages = [{"role": "user", "content": "what is w2?"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]
    prepared = run(service.prepare("acme", ChatRequest(brand="support", messages=messages,
                                                       tools=(WEATHER,))))
    assert "<tool_response>" in prepared.prompt and "sunny" in prepared.prompt
    assert retrieval.calls[-1]["query"] == "what is w2?"
    with pytest.raises(InvalidInput) as error:
        run(service.prepare("acme", ChatRequest(brand="support", messages=[
            {"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}])))
    assert error.value.param == "messages[1].role"


def test_n_answers_are_separate_engine_requests_with_advanced_seeds():
    service, _, engine = Setup().build()
    prepared = run(service.prepare("acme", ask(n=2, seed=10)))

    async def both():
        return [[c async for c in service.generate(prepared, i)] for i in range(2)]

    run(both())
    assert [(r.request_id, r.sampling.seed) for r in engine.requests] == [
        (prepared.request_id, 10), (f"{prepared.request_id}-1", 11)]


def test_a_raw_completion_is_the_prompt_as_given_with_sources_only_when_asked():
    service, retrieval, _ = Setup().build()
    off = run(service.prepare_completion("acme", ask("Once upon a time", retrieval=RetrievalOptions(mode="off"))))
    assert off.prompt == "Once upon a time" and off.citations == () and not retrieval.calls
    on = run(service.prepare_completion("acme", ask("what is w1?", retrieval=RetrievalOptions(mode="dense"))))
    assert on.prompt.endswith("\n\nwhat is w1?") and "[1] Title 1" in on.prompt and on.citations


# -- over HTTP ----------------------------------------------------------------------------

@pytest.fixture
def http(tmp_path):
    container = FakeContainer(Settings(data_dir=tmp_path / "data", environment="test"))
    container.tenants.create("acme")
    container.embedder = FakeEmbedder()
    key = container.tenants.issue_key("acme").secret
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, container
    container.close()


def test_http_n_choices_logprobs_and_streamed_choices(http):
    client, container = http
    body = {"model": "support", "messages": [{"role": "user", "content": "hi"}], "n": 2,
            "logprobs": True, "top_logprobs": 1}
    response = client.post("/v1/chat/completions", json=body).json()
    # a non-streamed reply asks for its answers whole (GenerationRequest.whole), a stream not
    assert [r.whole for r in container.engine.requests[-2:]] == [True, True]
    assert [c["index"] for c in response["choices"]] == [0, 1]
    assert response["usage"]["completion_tokens"] == 4  # two answers of two tokens
    tokens = response["choices"][1]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ["Hello", " there"] and tokens[0]["top_logprobs"][0]["token"] == "x"
    events = [json.loads(line[6:]) for line in client.post(
        "/v1/chat/completions", json={**body, "stream": True}).text.splitlines()
        if line.startswith("data: {")]
    text = {i: "".join(c["delta"].get("content", "") for e in events for c in e["choices"]
                       if c["index"] == i) for i in (0, 1)}
    assert text == {0: "Hello there", 1: "Hello there"}
    assert [r.whole for r in container.engine.requests[-2:]] == [False, False]


def test_http_developer_messages_are_system_messages(http):
    client, container = http
    response = client.post("/v1/chat/completions", json={"model": "support", "messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert "<system>" in container.engine.requests[-1].prompt
    assert "Be brief." in container.engine.requests[-1].prompt


def test_http_engine_without_guided_decoding_refuses_response_format(http):
    client, container = http
    container.engine.features = frozenset({EngineFeature.TOP_LOGPROBS})
    response = client.post("/v1/chat/completions", json={
        "model": "support", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"


def test_http_completions_and_embeddings_shapes(http):
    client, container = http
    completion = client.post("/v1/completions", json={"model": "support", "prompt": "Once",
                                                      "echo": True, "logprobs": 0}).json()
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == "OnceHello there"
    assert completion["choices"][0]["logprobs"]["text_offset"] == [4, 9]
    assert container.engine.requests[-1].prompt == "Once"
    refused = client.post("/v1/completions", json={"model": "support", "prompt": "a", "suffix": "b"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "suffix"
    floats = client.post("/v1/embeddings", json={"model": "fake-64", "input": ["a b", "c"],
                                                 "encoding_format": "float"}).json()
    encoded = client.post("/v1/embeddings", json={"model": "support", "input": ["a b", "c"],
                                                  "encoding_format": "base64"}).json()
    expected = container.embedder.embed_documents(["a b", "c"])
    assert np.allclose([d["embedding"] for d in floats["data"]], expected)
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in encoded["data"]]
    assert np.allclose(decoded, expected) and floats["usage"]["prompt_tokens"] == 3
    for body, param in [({"model": "nope", "input": "a"}, "model"),
                        ({"model": "fake-64", "input": []}, "input"),
                        ({"model": "fake-64", "input": "a", "dimensions": 8}, "dimensions")]:
        response = client.post("/v1/embeddings", json=body)
        assert response.json()["error"]["param"] == param, response.text
