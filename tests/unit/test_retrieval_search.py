"""Search: modes, filters, tenant isolation, validation, caching of tenant indexes."""

import pytest

from ingest.types import DocumentInput
from lorag.core.errors import InvalidInput, NotFound
from lorag.app.container import Lorag
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import fts_query
from lorag.core.modes import RetrievalMode
from retrieval.settings import IndexSettings, RetrievalSettings
from lorag.testing.settings import fast_settings

ANIMALS = [
    DocumentInput("cat", "Cats purr and chase mice around the barn.", metadata={"kind": "pet", "legs": 4}),
    DocumentInput("dog", "Dogs bark and fetch sticks in the park.", metadata={"kind": "pet", "legs": 4}),
    DocumentInput("hen", "Hens lay eggs and scratch the barn floor.", metadata={"kind": "farm", "legs": 2}),
    DocumentInput("cow", "Cows graze in the meadow and give milk.", metadata={"kind": "farm", "legs": 4,
                                                                            "dairy": True}),
]


def make_app(tmp_path, **kw):
    app = Lorag(fast_settings(tmp_path / "data", **kw))
    app.tenants.create("acme")
    return app


@pytest.fixture
def app(tmp_path):
    lorag = make_app(tmp_path)
    lorag.documents.ingest("acme", ANIMALS)
    yield lorag
    lorag.close()


def found(app, query, tenant="acme", **kw):
    return [h.document_id for h in app.retrieval.search(tenant, query, **kw)]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_the_matching_document_first(app, mode):
    assert found(app, "cows meadow milk", mode=mode)[0] == "cow"
    assert found(app, "bark fetch", mode=mode, k=1) == ["dog"]


def test_scores_are_descending_and_k_is_respected(app):
    for mode in ("dense", "lexical", "hybrid"):
        hits = app.retrieval.search("acme", "barn", mode=mode, k=2)  # cat and hen say "barn"
        assert len(hits) == 2 and [h.score for h in hits] == sorted([h.score for h in hits],
                                                                    reverse=True)


def test_hits_say_what_they_share_with_the_question(app):
    dense = app.retrieval.search("acme", "barn", mode="dense", k=4)
    assert all(h.dense_score == h.score and not h.lexical_match for h in dense)
    assert all(h.lexical_match and h.dense_score is None
               for h in app.retrieval.search("acme", "barn", mode="lexical"))
    hybrid = {h.document_id: h for h in app.retrieval.search("acme", "barn", mode="hybrid", k=4)}
    assert {d for d, h in hybrid.items() if h.lexical_match} == {"cat", "hen"}  # say "barn"
    cosine = {h.document_id: h.score for h in dense}
    assert all(h.dense_score == pytest.approx(cosine[d]) for d, h in hybrid.items())


def test_default_mode_and_k_come_from_settings(app):
    assert app.settings.retrieval.default_mode is RetrievalMode.HYBRID
    assert len(app.retrieval.search("acme", "the")) == min(4, app.settings.retrieval.default_k)


def test_the_default_mode_is_a_search_mode_never_off():
    assert RetrievalSettings(default_mode="lexical").default_mode is RetrievalMode.LEXICAL
    for mode in ("off", "semantic"):
        with pytest.raises(ValueError, match="default_mode"):
            RetrievalSettings(default_mode=mode)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_metadata_and_document_filters(app, mode):
    assert set(found(app, "barn", mode=mode, filters={"kind": "farm"}, k=10)) <= {"hen", "cow"}
    assert "hen" in found(app, "barn", mode=mode, filters={"kind": "farm"}, k=10)
    assert found(app, "barn milk", mode=mode, filters={"legs": 2}, k=10) == ["hen"]
    assert found(app, "milk", mode=mode, filters={"dairy": True}, k=10) == ["cow"]
    assert found(app, "barn", mode=mode, filters={"kind": "farm", "legs": 4}, k=10) in (["cow"], [])
    assert found(app, "mice barn", mode=mode, document_ids=["dog", "cat"], k=10)[0] == "cat"
    assert found(app, "barn", mode=mode, document_ids=[], k=10) == []
    assert found(app, "barn", mode=mode, filters={"kind": "wild"}, k=10) == []


def test_dense_filter_by_index_selector_matches_exact_scoring(tmp_path):
    exact = make_app(tmp_path / "a", exact_filter_limit=1000)
    selector = make_app(tmp_path / "b", exact_filter_limit=0)
    for app in (exact, selector):
        app.documents.ingest("acme", ANIMALS)
    for filters in ({"kind": "farm"}, {"legs": 4}):
        a = exact.retrieval.search("acme", "barn eggs", mode="dense", filters=filters, k=3)
        b = selector.retrieval.search("acme", "barn eggs", mode="dense", filters=filters, k=3)
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
        assert [round(h.score, 5) for h in a] == [round(h.score, 5) for h in b]


def test_tenants_never_see_each_others_chunks(app):
    app.tenants.create("globex")
    app.documents.ingest("globex", [DocumentInput("secret", "Globex barn plans: cows and hens.")])
    for mode in ("dense", "lexical", "hybrid"):
        assert {"hen", "cow"} <= set(found(app, "barn cows hens", mode=mode, k=100)) <= EVERY_ANIMAL
        assert found(app, "barn cows hens", tenant="globex", mode=mode, k=100) == ["secret"]
        assert found(app, "globex plans", mode=mode, document_ids=["secret"], k=100) == []
    acme_chunks = set(app.retrieval.tenant_index("acme").store.chunk_ids().tolist())
    globex_chunks = set(app.retrieval.tenant_index("globex").store.chunk_ids().tolist())
    assert app.layout.tenant_store("acme") != app.layout.tenant_store("globex")
    with pytest.raises(NotFound):
        app.documents.get("globex", "cat")
    assert acme_chunks and globex_chunks  # ids may coincide: each tenant has its own id space


def test_invalid_arguments_name_their_parameter(app):
    cases = [dict(mode="fuzzy"), dict(k=0), dict(k=1001), dict(k="5"), dict(k=True),
             dict(filters={"bad key!": 1}), dict(filters={"k": [1]}), dict(filters="kind=pet"),
             dict(filters={"k": float("nan")}), dict(document_ids="cat")]
    params = ["mode", "k", "k", "k", "k", "filters", "filters", "filters", "filters", "document_ids"]
    for kwargs, param in zip(cases, params):
        with pytest.raises(InvalidInput) as caught:
            app.retrieval.search("acme", "barn", **kwargs)
        assert caught.value.param == param, kwargs
    with pytest.raises(NotFound) as caught:
        app.retrieval.search("nobody", "barn")
    assert caught.value.param == "tenant"
    with pytest.raises(InvalidInput):
        app.retrieval.search("../etc", "barn")


EVERY_ANIMAL = {"cat", "dog", "hen", "cow"}


@pytest.mark.parametrize("query,matching", [
    ('"unbalanced', set()), ("AND OR NOT", EVERY_ANIMAL),  # stopwords only: kept, as words
    ("NEAR(a b)", set()), ("col:value", set()), ("a*", set()),  # no prefix match ("and")
    ("-minus +plus ^caret", set()), ("(((", set()), ("''", set()), ("🙂", set()),
    ("   ", set()), ("the of and", EVERY_ANIMAL), ('barn" OR "x', {"cat", "hen"}),
    ("NULL", set()), ("\x00", set())])
def test_user_text_is_never_fts_syntax(app, query, matching):
    """The lexical matches are exactly the documents holding one of the query's words."""
    assert set(found(app, query, mode="lexical")) == matching
    hybrid = app.retrieval.search("acme", query, mode="hybrid")
    assert {h.document_id for h in hybrid if h.lexical_match} == matching


def test_fts_query_quotes_words_and_drops_stopwords():
    assert fts_query("The cat AND the \"dog\"") == '"cat" OR "dog"'
    assert fts_query("the of") == '"the" OR "of"'
    assert fts_query("?!") is None


def test_tenant_without_documents_gets_nothing(app):
    app.tenants.create("empty")
    for mode in ("dense", "lexical", "hybrid"):
        assert app.retrieval.search("empty", "anything", mode=mode) == []
    assert not app.layout.tenant_store("empty").exists()


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1][1] == pytest.approx(1 / 63 + 1 / 61)


def test_deleting_a_tenant_evicts_its_index_and_files(app):
    app.retrieval.search("acme", "barn", mode="dense")
    assert "acme" in app.retrieval.loaded_tenants()
    app.tenants.delete("acme")
    assert "acme" not in app.retrieval.loaded_tenants()
    assert not app.layout.tenant_dir("acme").exists()
    app.tenants.create("acme")
    assert app.retrieval.search("acme", "barn") == []


def test_lru_keeps_at_most_cache_tenants_loaded(tmp_path):
    app = make_app(tmp_path, index=IndexSettings(cache_tenants=2))
    for name in ("t1", "t2", "t3"):
        app.tenants.create(name)
        app.documents.ingest(name, [DocumentInput(f"{name}-doc", f"{name} owns this barn")])
    for name in ("t1", "t2", "t3", "t1"):
        assert found(app, "barn", tenant=name, mode="dense") == [f"{name}-doc"]
    assert app.retrieval.loaded_tenants() == ["t3", "t1"]
    app.close()


def test_large_tenant_switches_to_hnsw_and_back(tmp_path):
    app = make_app(tmp_path, index=IndexSettings(ann_threshold=20, hnsw_m=8))
    docs = [DocumentInput(f"d{i}", f"document number {i} about topic{i % 7}") for i in range(30)]
    app.documents.ingest("acme", docs)
    index = app.retrieval.tenant_index("acme")
    assert found(app, "topic3 number 10", mode="dense", k=1) == ["d10"]
    assert index.kind == "hnsw"
    for i in range(25):
        app.documents.delete("acme", f"d{i}")
    assert found(app, "topic3 number 26", mode="dense", k=1) == ["d26"]
    assert index.kind == "flat"
    assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()
    app.close()


def test_vectors_from_another_embedder_are_refused(app):
    from lorag.core.errors import Conflict
    from lorag.core.jobs import FAILED

    store = app.retrieval.tenant_index("acme").store
    with store.db.transaction() as conn:
        conn.execute("UPDATE meta SET value = 'other-model' WHERE key = 'embedder'")
    app.retrieval.forget("acme")
    with pytest.raises(Conflict) as caught:
        app.retrieval.search("acme", "barn", mode="dense")
    assert caught.value.param == "embedder"
    with pytest.raises(Conflict):
        app.documents.ingest("acme", [DocumentInput("new", "text")])
    job_id = app.documents.start_job("acme", [DocumentInput("new", "text")])
    assert app.documents.wait(job_id, timeout=60)
    job = app.jobs.get("acme", job_id)
    assert job.status == FAILED and "other-model" in job.error


def test_a_reader_behind_a_pruned_deletion_log_rebuilds(tmp_path):
    behind = make_app(tmp_path, index=IndexSettings(deletion_log_max=0))
    behind.documents.ingest("acme", ANIMALS)
    assert found(behind, "barn", mode="dense", k=10)  # loaded at this generation
    writer = Lorag(behind.settings)
    writer.documents.delete("acme", "hen")
    writer.documents.delete("acme", "cat")
    writer.retrieval.tenant_index("acme").save()  # writes the index file, then prunes the log
    store = writer.retrieval.tenant_index("acme").store
    assert store.deletion_log_size() == 0 and store.state().log_floor > 0
    assert set(found(behind, "barn", mode="dense", k=10)) == {"dog", "cow"}
    index = behind.retrieval.tenant_index("acme")
    assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()
    writer.close()
    behind.close()


def test_search_while_a_background_job_ingests(app):
    docs = [DocumentInput(f"bulk{i}", f"bulk document {i} about barns and meadows")
            for i in range(300)]
    job_id = app.documents.start_job("acme", docs)
    known = {d.id for d in docs} | EVERY_ANIMAL
    while True:  # at least one round, however fast the job
        done = app.documents.wait(job_id, timeout=0.01)
        committed = app.documents.count("acme")
        lexical = found(app, "bulk barns", mode="lexical", k=1000)
        # every committed bulk document says both words; of the animals, cat and hen "barn"
        assert len(lexical) == len(set(lexical)) >= committed - 2 and set(lexical) <= known
        for mode in ("dense", "hybrid"):
            hits = found(app, "bulk barns", mode=mode, k=100)
            assert len(hits) == len(set(hits)) >= min(100, committed), (mode, committed, hits)
            assert set(hits) <= known
        if done:
            break
    assert committed == 304  # the last round ran after the job ended
    assert app.jobs.get("acme", job_id).completed == 300
    assert len(app.retrieval.search("acme", "bulk barns", mode="dense", k=100)) == 100
    index = app.retrieval.tenant_index("acme")
    assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()


def test_tenant_deleted_and_recreated_by_another_process_leaks_nothing(app):
    assert found(app, "barn", mode="dense", k=10)  # this process caches acme's index
    other = Lorag(app.settings)                    # e.g. the CLI while the server runs
    other.tenants.delete("acme")
    other.tenants.create("acme")
    other.documents.ingest("acme", [DocumentInput("fresh", "a fresh start in a new barn")])
    for mode in ("dense", "lexical", "hybrid"):
        assert found(app, "barn cows hens mice", mode=mode, k=10) == ["fresh"]
    other.close()


def test_search_threads_setting_does_not_leak_into_the_embedder(app):
    import faiss

    before = faiss.omp_get_max_threads()  # the same OpenMP runtime as torch's
    app.retrieval.search("acme", "barn", mode="dense")
    assert faiss.omp_get_max_threads() == before


def test_index_state_moves_with_every_ingest_and_delete(app):
    app.tenants.create("empty")
    assert app.retrieval.index_state("empty") is None  # nothing ingested yet
    before = app.retrieval.index_state("acme")
    assert before["covered"] >= len(ANIMALS)
    app.documents.ingest("acme", [DocumentInput("owl", "Owls hoot at night.")])
    added = app.retrieval.index_state("acme")
    assert added["covered"] > before["covered"] and added["generation"] == before["generation"]
    app.documents.delete("acme", "owl")
    removed = app.retrieval.index_state("acme")
    assert removed["generation"] > added["generation"] and removed["covered"] == added["covered"]
    assert app.retrieval.index_state("acme") == removed  # a read changes nothing
