"""Ingestion: incremental re-ingest, updates, deletes, prune, reports and jobs."""

import json

import pytest

from ingest.types import DocumentInput
from lorag.core.errors import InvalidInput, NotFound
from lorag.core.jobs import SUCCEEDED
from lorag.app.container import Lorag
from lorag.testing.settings import fast_settings


@pytest.fixture
def app(tmp_path):
    lorag = Lorag(fast_settings(tmp_path / "data"))
    lorag.tenants.create("acme")
    yield lorag
    lorag.close()


def corpus(folder, n=6):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        body = " ".join(f"topic{i} word{j}" for j in range(40))
        (folder / f"doc{i}.md").write_text(f"# Document {i}\n\n{body}.\n")
    return folder


def ids_found(app, query, **kw):
    return [h.document_id for h in app.retrieval.search("acme", query, **kw)]


def test_first_ingest_then_unchanged_reingest_embeds_nothing(app, tmp_path):
    folder = corpus(tmp_path / "docs")
    embedder = app.embedder
    first = app.documents.ingest("acme", [folder])
    assert (first.added, first.updated, first.unchanged, first.failed) == (6, 0, 0, 0)
    assert first.chunks_embedded > 6
    calls, texts = embedder.calls, embedder.texts_embedded
    again = app.documents.ingest("acme", [folder])
    assert (again.added, again.updated, again.unchanged, again.chunks_embedded) == (0, 0, 6, 0)
    assert (embedder.calls, embedder.texts_embedded) == (calls, texts)


def test_changed_document_replaces_its_chunks(app, tmp_path):
    folder = corpus(tmp_path / "docs", n=2)
    app.documents.ingest("acme", [folder])
    old = app.documents.get("acme", "docs/doc0.md")
    (folder / "doc0.md").write_text("# Document 0\n\nNow about zebras and giraffes only.\n")
    embedder = app.embedder
    texts = embedder.texts_embedded
    report = app.documents.ingest("acme", [folder])
    assert (report.updated, report.unchanged, report.added) == (1, 1, 0)
    assert embedder.texts_embedded - texts == report.chunks_embedded == 1
    new = app.documents.get("acme", "docs/doc0.md")
    assert new.content_hash != old.content_hash and new.chunks == 1
    assert ids_found(app, "zebras giraffes", mode="lexical") == ["docs/doc0.md"]
    assert "docs/doc0.md" not in ids_found(app, "topic0", mode="lexical", k=20)
    hits = app.retrieval.search("acme", "topic0 word1", mode="dense", k=50)
    assert all("topic0" not in h.text for h in hits)


def test_metadata_or_title_change_counts_as_update(app):
    app.documents.ingest("acme", [DocumentInput("a", "same text", metadata={"v": 1})])
    report = app.documents.ingest("acme", [DocumentInput("a", "same text", metadata={"v": 2})])
    assert report.updated == 1
    report = app.documents.ingest("acme", [DocumentInput("a", "same text", title="T",
                                                         metadata={"v": 2})])
    assert report.updated == 1
    assert app.documents.get("acme", "a").title == "T"


def test_delete_removes_document_from_every_mode(app, tmp_path):
    app.documents.ingest("acme", [corpus(tmp_path / "docs", n=3)])
    app.documents.delete("acme", "docs/doc1.md")
    for mode in ("dense", "lexical", "hybrid"):
        assert "docs/doc1.md" not in ids_found(app, "topic1 word3", mode=mode, k=50)
    with pytest.raises(NotFound) as caught:
        app.documents.delete("acme", "docs/doc1.md")
    assert caught.value.param == "document_id"
    with pytest.raises(NotFound):
        app.documents.get("acme", "docs/doc1.md")
    index = app.retrieval.tenant_index("acme")
    assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()


def test_prune_deletes_documents_no_longer_present(app, tmp_path):
    folder = corpus(tmp_path / "docs", n=3)
    app.documents.ingest("acme", [folder])
    (folder / "doc2.md").unlink()
    report = app.documents.ingest("acme", [folder], prune=True)
    assert (report.deleted, report.unchanged) == (1, 2)
    assert [d.id for d in app.documents.list("acme")] == ["docs/doc0.md", "docs/doc1.md"]


def test_documents_as_objects_dicts_and_jsonl(app, tmp_path):
    lines = [{"id": "j1", "text": "jsonl first", "title": "J", "metadata": {"lang": "en"}},
             {"_id": "j2", "text": "beir style id"}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    report = app.documents.ingest("acme", [path, {"id": "d1", "text": "from a dict"},
                                           DocumentInput("o1", "from an object", source="s")])
    assert (report.added, report.failed) == (4, 0)
    j1 = app.documents.get("acme", "j1")
    assert (j1.title, j1.metadata, j1.source) == ("J", {"lang": "en"}, "docs.jsonl:1")
    assert app.documents.get("acme", "o1").source == "s"


def test_search_hits_carry_provenance(app, tmp_path):
    app.documents.ingest("acme", [corpus(tmp_path / "docs", n=1)])
    hit = app.retrieval.search("acme", "document", mode="lexical", k=1)[0]
    assert hit.document_id == "docs/doc0.md" and hit.title == "Document 0"
    assert hit.source == "docs/doc0.md"  # relative: no server path in citations
    assert hit.position == 0 and hit.metadata == {"section": "Document 0"}  # its heading


def test_list_get_count_and_errors(app, tmp_path):
    app.documents.ingest("acme", [corpus(tmp_path / "docs", n=3)])
    assert [d.id for d in app.documents.list("acme", limit=2, offset=1)] == ["docs/doc1.md",
                                                                            "docs/doc2.md"]
    assert app.documents.count("acme") == 3
    with pytest.raises(InvalidInput):
        app.documents.list("acme", limit=0)
    with pytest.raises(NotFound) as caught:
        app.documents.list("nobody")
    assert caught.value.param == "tenant"
    with pytest.raises(NotFound):
        app.documents.ingest("nobody", [])


def test_background_job_reports_progress_and_failures(app, tmp_path):
    folder = corpus(tmp_path / "docs", n=4)
    (folder / "empty.txt").write_text("  \n ")
    job_id = app.documents.start_job("acme", [folder])
    assert app.documents.wait(job_id, timeout=60)
    job = app.jobs.get("acme", job_id)
    assert (job.status, job.submitted, job.completed, job.failed) == (SUCCEEDED, 5, 4, 1)
    assert job.failures == [{"item": "docs/empty.txt", "code": "empty_document",
                             "message": "the document has no text"}]
    assert job.result["added"] == 4
    assert len(app.documents.list("acme")) == 4


def test_index_survives_restart_and_catches_up(tmp_path):
    settings = fast_settings(tmp_path / "data")
    first = Lorag(settings)
    first.tenants.create("acme")
    first.documents.ingest("acme", [corpus(tmp_path / "docs", n=2)])
    first.close()
    second = Lorag(settings)
    assert ids_found(second, "topic1", mode="dense", k=1) == ["docs/doc1.md"]
    # Another process (here: another container) adds and deletes; this one catches up.
    third = Lorag(settings)
    third.documents.ingest("acme", [DocumentInput("late", "a late arrival about walruses")])
    third.documents.delete("acme", "docs/doc1.md")
    assert ids_found(second, "walruses", mode="dense", k=1) == ["late"]
    assert "docs/doc1.md" not in ids_found(second, "topic1", mode="dense", k=10)
    index = second.retrieval.tenant_index("acme")
    assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()
    second.close()
    third.close()


def test_update_embeds_only_the_chunks_that_changed(app):
    paragraphs = [" ".join(f"para{p} word{w}" for w in range(12)) + "." for p in range(6)]
    app.documents.ingest("acme", [DocumentInput("long", "\n\n".join(paragraphs))])
    before = app.documents.get("acme", "long").chunks
    assert before >= 4
    paragraphs[-1] = "A rewritten last paragraph about otters."
    embedder = app.embedder
    texts = embedder.texts_embedded
    report = app.documents.ingest("acme", [DocumentInput("long", "\n\n".join(paragraphs))])
    assert report.updated == 1 and 1 <= report.chunks_embedded < before
    assert embedder.texts_embedded - texts == report.chunks_embedded
    hits = app.retrieval.search("acme", "para0 word3", mode="dense", k=1)
    assert hits[0].document_id == "long" and "para0" in hits[0].text
    assert app.retrieval.search("acme", "otters", mode="lexical")[0].document_id == "long"


def test_identical_texts_in_a_batch_are_embedded_once(app):
    docs = [DocumentInput(f"copy{i}", "the same boilerplate text") for i in range(5)]
    report = app.documents.ingest("acme", docs)
    assert (report.added, report.chunks_embedded) == (5, 1)
    hits = app.retrieval.search("acme", "boilerplate", mode="dense", k=10)
    assert sorted(h.document_id for h in hits) == [f"copy{i}" for i in range(5)]
