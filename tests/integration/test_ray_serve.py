"""lorag as a Ray Serve application on the session's local Ray cluster
(tests/fixtures_ray.py: 2 CPUs, a 500 MB object store, no dashboard): two engine replicas of the real vLLM engine on the
tiny model, multiplexed by adapter version, fed by the adapter registry deployment.

The chat path is driven through ``RayServeEngine``, the ingress' engine, so each request's
replica is known; the local vLLM engine on the same model is the oracle (greedy tokens
must agree). Adapter delivery is checked end to end (a corrupted registry copy is refused,
nothing is generated) and at the cache (a corrupted local copy is fetched again).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("vllm")

from ray import serve  # noqa: E402
from ray.serve.api import RunTarget  # noqa: E402

from adapters.engines import build_engine  # noqa: E402
from adapters.settings import AdapterSettings, EngineSettings  # noqa: E402
from lorag.app.container import Lorag  # noqa: E402
from lorag.app.settings import RaySettings, Settings  # noqa: E402
from lorag.cluster.adapters import (AdapterCache, AdapterRegistry, AdapterUnverified,  # noqa: E402
                                    adapter_model_id)
from lorag.cluster.app import build_app  # noqa: E402
from lorag.cluster.engine_client import RayServeEngine  # noqa: E402
from lorag.testing.engine_conformance import collect, request  # noqa: E402
from lorag.testing.server import free_port  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINE = dict(max_model_len=512, max_loras=2, max_cpu_loras=4, max_lora_rank=16,
              kv_cache_bytes=128 * 2**20, max_num_seqs=8, engine_process=False)


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's local cluster (tests/fixtures_ray.py); Serve is shut down after the
    module."""
    yield ray_cluster
    serve.shutdown()


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def stack(cluster, loop, tmp_path_factory, tiny_model, tiny_lora_factory):
    """Tenant ``acme`` with adapters a and b; the app with two engine replicas; the
    ingress' engine client, and the local engine (oracle) on the same model."""
    root = tmp_path_factory.mktemp("ray")
    settings = Settings(
        data_dir=root / "data", environment="test",
        engine=EngineSettings(model=str(tiny_model), **ENGINE),
        adapters=AdapterSettings(max_unpacked_bytes=16 * 2**20),
        ray=RaySettings(engine_replicas=2, engine_num_cpus=0.5, ingress_num_cpus=0,
                        max_adapters_per_replica=4, adapter_cache_dir=root / "cache"))
    app = Lorag(settings)
    app.tenants.create("acme")
    refs = {name: app.adapters.register("acme", name, tiny_lora_factory(seed=seed)).ref()
            for name, seed in (("a", 1), ("b", 2))}
    key = app.tenants.issue_key("acme").secret
    app.brands.create("acme", "acme-a", adapter="a")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # the app starts while the local engine does (not waiting for it in between)
    serve.run_many([RunTarget(build_app(settings, str(tiny_model)), name="lorag",
                              route_prefix="/")], wait_for_applications_running=False)
    local = build_engine(settings.engine, model=str(tiny_model), work_dir=root / "local")
    loop.run_until_complete(local.warm_up())
    deadline = time.monotonic() + 900
    while serve.status().applications["lorag"].status != "RUNNING":
        assert serve.status().applications["lorag"].status in ("DEPLOYING", "RUNNING"), \
            serve.status().applications["lorag"]
        assert time.monotonic() < deadline, serve.status().applications["lorag"]
        time.sleep(0.5)
    client = RayServeEngine(serve.get_deployment_handle("EngineReplica", app_name="lorag"),
                            model=str(tiny_model), max_model_len=512)
    loop.run_until_complete(client.warm_up())
    yield {"app": app, "refs": refs, "client": client, "local": local, "settings": settings,
           "url": f"http://127.0.0.1:{port}", "key": key}
    loop.run_until_complete(local.shutdown())
    serve.delete("lorag")
    app.close()


MANY = 160  # tokens: long enough to be mid-answer when the replica is killed


def tokens(loop, engine, ref, **sampling) -> list[int]:
    sampling.setdefault("max_tokens", 16)
    return loop.run_until_complete(collect(engine, request(ref, **sampling))).tokens


def test_each_adapter_stays_on_one_replica_and_answers_like_the_local_engine(stack, loop):
    client, local, refs = stack["client"], stack["local"], stack["refs"]
    for ref in (refs["a"], refs["b"], refs["a"], refs["b"], None):
        assert tokens(loop, client, ref) == tokens(loop, local, ref)
    for _ in range(4):
        for ref in (refs["a"], refs["b"]):
            tokens(loop, client, ref)
    routing = client.routing()
    for ref in (refs["a"], refs["b"]):
        served = routing[adapter_model_id(ref)]
        assert sum(served.values()) == 6
        assert len(served) == 1, f"{ref.name} went to several replicas: {served}"


def test_a_new_version_is_served_never_the_old_one(stack, loop, tiny_lora_factory):
    app, client, local = stack["app"], stack["client"], stack["local"]
    old = app.adapters.resolve("acme", "a")
    assert tokens(loop, client, old) == tokens(loop, local, old)
    new = app.adapters.register("acme", "a", tiny_lora_factory(seed=3)).ref()
    assert new.int_id != old.int_id
    expected = tokens(loop, local, new)
    assert expected != tokens(loop, local, old)  # the versions answer differently
    for _ in range(3):
        assert tokens(loop, client, new) == expected


def test_a_version_whose_registry_copy_fails_its_hash_is_never_served(stack, loop,
                                                                      tiny_lora_factory):
    app, client = stack["app"], stack["client"]
    ref = app.adapters.register("acme", "c", tiny_lora_factory(seed=4)).ref()
    weights = ref.path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # bit rot in the registry's own copy
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterUnverified) as refused:
        tokens(loop, client, ref)
    assert refused.value.param == "adapter"
    assert adapter_model_id(ref) not in client.routing()  # not one chunk was produced


def test_a_corrupted_local_copy_is_refused_and_fetched_again(stack, loop, tmp_path):
    registry = ray.remote(AdapterRegistry).remote(stack["settings"])
    cache = AdapterCache(tmp_path / "cache", record=lambda m: registry.record.remote(m),
                         fetch=lambda m: registry.fetch.remote(m))
    ref = stack["refs"]["b"]
    model_id = adapter_model_id(ref)
    first = loop.run_until_complete(cache.get(model_id))
    assert cache.counts == {"cache_hits": 0, "fetches": 1, "refused_copies": 0}
    weights = first.path / "adapter_model.safetensors"
    original = weights.read_bytes()
    with open(weights, "r+b") as f:  # flipped in place
        f.seek(len(original) // 2)
        f.write(bytes([original[len(original) // 2] ^ 0xFF]))
    again = loop.run_until_complete(cache.get(model_id))
    assert cache.counts == {"cache_hits": 0, "fetches": 2, "refused_copies": 1}
    assert (again.path / "adapter_model.safetensors").read_bytes() == original
    loop.run_until_complete(cache.get(model_id))
    assert cache.counts["cache_hits"] == 1
    shutil.rmtree(tmp_path / "cache")
    ray.kill(registry)


def test_the_http_api_answers_through_the_ingress_deployment(stack):
    import openai

    oai = openai.OpenAI(base_url=stack["url"] + "/v1", api_key=stack["key"], max_retries=0,
                        timeout=120)
    assert [m.id for m in oai.models.list()] == ["acme-a"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = oai.chat.completions.create(model="acme-a", messages=messages, max_tokens=8,
                                         temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")
    streamed = oai.chat.completions.create(model="acme-a", messages=messages, max_tokens=8,
                                           temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == answer.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="acme-a", messages=messages, max_tokens=0)
    assert bad.value.body["param"] == "max_tokens"


def engine_replicas() -> dict[str, dict]:
    """The live engine replica actors by replica id (the end of the actor's name)."""
    return {actor["name"].rsplit("#", 1)[-1]: actor
            for actor in ray.util.list_named_actors(all_namespaces=True)
            if "#EngineReplica#" in actor["name"]}


def test_a_replica_killed_mid_request_is_replaced_and_its_requests_still_answer(stack, loop):
    """Non-streaming requests (collected whole; half of them flagged ``whole``, which the
    replica sends as its first chunks, then the rest at the end) are generating on the
    replicas; the replica that holds some of them, as its own streamed items say, is
    killed. Each of its requests runs again on the other replica and is resumed after the
    tokens already produced (greedy: reproducible), so every request answers what the
    local engine answers; Serve starts a replica in place of the dead one."""
    client, local, refs = stack["client"], stack["local"], stack["refs"]
    names = "ab" * 4
    expected = {name: tokens(loop, local, refs[name], max_tokens=MANY) for name in "ab"}
    before = engine_replicas()
    assert len(before) == 2

    async def scenario() -> tuple[str, list[str], list[list[int]]]:
        requests = [replace(request(refs[name], max_tokens=MANY), whole=i < len(names) // 2)
                    for i, name in enumerate(names)]
        running = [asyncio.ensure_future(collect(client, r)) for r in requests]
        deadline = loop.time() + 300
        while not client.in_flight():  # the first chunks have come back
            assert loop.time() < deadline, "no request started"
            assert not any(task.done() for task in running)
            await asyncio.sleep(0.005)
        victim = client.in_flight()[next(iter(client.in_flight()))]
        held = [r.request_id for r in requests if client.in_flight().get(r.request_id) == victim]
        ray.kill(ray.get_actor(before[victim]["name"], namespace=before[victim]["namespace"]),
                 no_restart=True)
        answers = await asyncio.gather(*running)
        return victim, held, [answer.tokens for answer in answers]

    victim, held, answers = loop.run_until_complete(scenario())
    assert answers == [expected[name] for name in names]
    assert held and set(held) <= set(client.reruns), (held, client.reruns)
    assert all(client.reruns[r] > 0 for r in held)  # resumed mid-answer, not retried before
    deadline = loop.time() + 300
    while not (set(engine_replicas()) - set(before)):  # Serve starts a replacement
        assert loop.time() < deadline, f"no replica replaced {victim}: {engine_replicas()}"
        loop.run_until_complete(asyncio.sleep(0.2))
    assert victim not in engine_replicas()
