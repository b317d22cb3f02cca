"""lorag/cluster without a cluster: adapter delivery (the registry and the replica's cache,
called directly), version ids, and the deployment options the settings give."""

from __future__ import annotations

import asyncio

import pytest

from adapters.settings import AdapterSettings, EngineSettings
from lorag.app.container import Lorag
from lorag.app.settings import RaySettings, Settings
from lorag.cluster.adapters import (AdapterCache, AdapterFiles, AdapterRegistry,
                                    AdapterUnverified, VersionId, adapter_model_id)
from lorag.core.errors import InvalidInput, NotFound


@pytest.fixture
def registry(tmp_path, tiny_model, tiny_lora_factory):
    settings = Settings(data_dir=tmp_path / "data", environment="test",
                        engine=EngineSettings(model=str(tiny_model)),
                        adapters=AdapterSettings(max_unpacked_bytes=16 * 2**20))
    app = Lorag(settings)
    app.tenants.create("acme")
    app.adapters.register("acme", "voice", tiny_lora_factory(seed=1))
    registry = AdapterRegistry(settings)
    yield app, registry
    registry.close()
    app.close()


def cache_over(registry: AdapterRegistry, root, deliver=None) -> AdapterCache:
    async def record(model_id):
        return registry.record(model_id)

    async def fetch(model_id):
        delivered = registry.fetch(model_id)
        return deliver(delivered) if deliver else delivered

    return AdapterCache(root, record=record, fetch=fetch)


def test_a_version_id_names_tenant_adapter_version_and_id():
    parsed = VersionId.parse("acme/voice/v3#17")
    assert parsed == VersionId("acme", "voice", 3, 17)
    for bad in ("acme/voice/3#17", "acme/voice/v3", "voice#1", "a/b/vx#1"):
        with pytest.raises(InvalidInput) as refused:
            VersionId.parse(bad)
        assert refused.value.param == "model"


def test_a_fetched_copy_is_verified_then_reused(registry, tmp_path):
    app, reg = registry
    ref = app.adapters.resolve("acme", "voice")
    cache = cache_over(reg, tmp_path / "cache")
    got = asyncio.run(cache.get(adapter_model_id(ref)))
    assert (got.int_id, got.version) == (ref.int_id, ref.version)
    assert (got.path / "adapter_model.safetensors").read_bytes() == \
        (ref.path / "adapter_model.safetensors").read_bytes()
    asyncio.run(cache.get(adapter_model_id(ref)))
    assert cache.counts == {"cache_hits": 1, "fetches": 1, "refused_copies": 0}


def test_a_copy_altered_in_transit_is_refused_and_nothing_is_cached(registry, tmp_path):
    app, reg = registry
    ref = app.adapters.resolve("acme", "voice")

    def tamper(delivered: AdapterFiles) -> AdapterFiles:
        files = dict(delivered.files)
        files["adapter_model.safetensors"] = files["adapter_model.safetensors"][:-1] + b"\0"
        return AdapterFiles(delivered.record, files)

    cache = cache_over(reg, tmp_path / "cache", tamper)
    with pytest.raises(AdapterUnverified) as refused:
        asyncio.run(cache.get(adapter_model_id(ref)))
    assert refused.value.param == "adapter" and refused.value.code == "adapter_unverified"
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_file_name_leaving_its_folder_is_refused(registry, tmp_path):
    app, reg = registry
    ref = app.adapters.resolve("acme", "voice")

    def escape(delivered: AdapterFiles) -> AdapterFiles:
        return AdapterFiles(delivered.record, {**delivered.files, "../evil": b"x"})

    with pytest.raises(AdapterUnverified):
        asyncio.run(cache_over(reg, tmp_path / "cache", escape).get(adapter_model_id(ref)))
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_deleted_or_recreated_version_is_not_found(registry, tiny_lora_factory):
    app, reg = registry
    ref = app.adapters.resolve("acme", "voice")
    app.adapters.delete("acme", "voice")
    with pytest.raises(NotFound):
        reg.fetch(adapter_model_id(ref))
    app.adapters.register("acme", "voice", tiny_lora_factory(seed=1))  # v2, another id
    stale = adapter_model_id(ref).replace("/v1#", "/v2#")
    with pytest.raises(NotFound):
        reg.fetch(stale)


def test_engine_options_follow_the_settings():
    from lorag.cluster.app import _engine_options

    fixed = _engine_options(RaySettings(engine_replicas=3, engine_num_gpus=1))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"]["num_gpus"] == 1
    scaled = _engine_options(RaySettings(engine_min_replicas=1, engine_max_replicas=8))
    assert scaled["autoscaling_config"]["max_replicas"] == 8 and "num_replicas" not in scaled
    with pytest.raises(ValueError):
        RaySettings(engine_min_replicas=4, engine_max_replicas=2)


def test_ingress_options_follow_the_settings():
    from lorag.cluster.app import _ingress_options

    options = _ingress_options(RaySettings(ingress_replicas=2, ingress_max_ongoing_requests=32))
    assert (options["num_replicas"], options["max_ongoing_requests"]) == (2, 32)
    assert options["ray_actor_options"]["resources"] == {"lorag_data": 0.001}
    assert RaySettings().ingress_max_ongoing_requests > 5  # above Serve's default of 5


def test_ray_ingestion_embeds_each_commit_group_in_one_ray_data_run(tmp_path, monkeypatch):
    """Each Ray Data run starts its actor pool afresh, so the fair scheduler's small
    embedding slices must not split a group into runs of their own (they once made a
    664-chunk ingest 11 runs, 4.4x local ingestion)."""
    import numpy as np

    import lorag.cluster.ingest as cluster_ingest
    from lorag.testing.settings import fast_settings
    from retrieval.embedders import FakeEmbedder

    runs: list[int] = []

    class Recorded:  # stands in for RayDataEmbedding: no cluster here
        def __init__(self, embedder, settings):
            self.fake = FakeEmbedder()

        def __call__(self, texts: list[str]) -> np.ndarray:
            runs.append(len(texts))
            return self.fake.embed_documents(texts)

    monkeypatch.setattr(cluster_ingest, "RayDataEmbedding", Recorded)
    settings = fast_settings(tmp_path / "data").model_copy(
        update={"ray": RaySettings(ingest_commit_chunks=100)})
    assert settings.limits.embedding_slice < 100
    app = cluster_ingest.ray_ingestion(settings)
    try:
        app.tenants.create("acme")
        docs = [{"id": f"d{i}", "text": " ".join(f"word{i}x{j}" for j in range(70))}
                for i in range(10)]  # 3 chunks each of 32 tokens: 30 chunks per ingest
        report = app.documents.ingest("acme", docs)
        assert report.added == 10 and runs == [report.chunks_embedded]
        more = [{"id": f"e{i}", "text": " ".join(f"more{i}x{j}" for j in range(400))}
                for i in range(20)]  # ~17 chunks each: groups pass 100 by a document's
        runs.clear()
        groups: list[list[str]] = []
        report = app.documents.ingest("acme", more, on_commit=groups.append)
        assert sum(runs) == report.chunks_embedded and report.added == 20
        assert len(runs) == len(groups) >= 2 and all(n > 100 for n in runs[:-1]), runs
    finally:
        app.close()


class _Stream:
    """A Serve streaming response: ``items`` then, with ``dies``, the replica's death."""

    def __init__(self, items, dies: bool):
        self.items, self.dies = list(items), dies

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.items:
            return self.items.pop(0)
        if self.dies:
            from ray.exceptions import ActorDiedError

            raise ActorDiedError()
        raise StopAsyncIteration

    def cancel(self) -> None:
        pass


class _Handle:
    """An engine deployment handle whose successive calls stream ``runs`` in turn."""

    def __init__(self, runs):
        self.runs = list(runs)
        self.generate = self

    def options(self, **_):
        return self

    def remote(self, request):
        return self.runs.pop(0)


def _chunk(tokens: list[int], finish: str | None = None):
    from adapters.engines.protocol import GenerationChunk

    return GenerationChunk(text="".join(chr(96 + t) for t in tokens), token_ids=tokens,
                           finish_reason=finish, completion_tokens=max(tokens))


def _engine(runs):
    pytest.importorskip("ray")
    from lorag.cluster.engine_client import RayServeEngine

    engine = RayServeEngine(_Handle(runs), model="m", max_model_len=512)
    engine._tokenizer = object()  # ready without loading one
    return engine


def _answer(engine, **sampling):
    from lorag.testing.engine_conformance import collect, request

    return asyncio.run(collect(engine, request(None, **sampling)))


def test_a_greedy_request_whose_replica_dies_mid_answer_is_resumed_after_what_was_sent():
    first = _Stream([("r1", [_chunk([1])]), ("r1", [_chunk([2]), _chunk([3])])], dies=True)
    again = _Stream([("r2", [_chunk([1, 2])]), ("r2", [_chunk([3, 4]), _chunk([5], "length")])],
                    dies=False)
    engine = _engine([first, again])
    answer = _answer(engine)
    assert (answer.tokens, answer.text, answer.finish_reason) == ([1, 2, 3, 4, 5], "abcde",
                                                                  "length")
    assert list(engine.reruns.values()) == [3]
    assert engine.routing() == {"": {"r1": 1, "r2": 1}}


def test_a_resumed_request_whose_second_run_departs_from_what_was_sent_is_unavailable():
    from lorag.core.errors import Unavailable

    first = _Stream([("r1", [_chunk([1, 2])])], dies=True)
    again = _Stream([("r2", [_chunk([1, 7])]), ("r2", [_chunk([8], "stop")])], dies=False)
    with pytest.raises(Unavailable):
        _answer(_engine([first, again]))


def test_a_sampled_request_whose_replica_dies_mid_answer_is_not_run_again():
    from lorag.core.errors import Unavailable

    first = _Stream([("r1", [_chunk([1, 2])])], dies=True)
    engine = _engine([first, _Stream([("r2", [_chunk([1, 2, 3], "stop")])], dies=False)])
    with pytest.raises(Unavailable):
        _answer(engine, temperature=0.8)
    assert engine.reruns == {}


def test_a_request_whose_replica_dies_before_its_first_chunk_is_retried_whatever_its_sampling():
    first = _Stream([], dies=True)
    engine = _engine([first, _Stream([("r2", [_chunk([1, 2], "stop")])], dies=False)])
    assert _answer(engine, temperature=0.8).tokens == [1, 2]
    assert list(engine.reruns.values()) == [0]
