"""The real embedder (packaged all-MiniLM-L6-v2) end to end: ingest, search, re-ingest."""

import pytest

from ingest.types import DocumentInput
from lorag.app.settings import Settings
from lorag.app.container import Lorag

pytestmark = pytest.mark.integration

DOCS = [
    DocumentInput("physician", "The physician prescribed antibiotics for the infection."),
    DocumentInput("kitchen", "Whisk the eggs, then fold in the flour and bake for an hour."),
    DocumentInput("finance", "Quarterly revenue grew while operating costs fell."),
    DocumentInput("long", "\n\n".join(f"Paragraph {i}. " + "The committee reviewed the "
                                      "annual budget in detail. " * 12 for i in range(12))),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    lorag = Lorag(Settings(data_dir=tmp_path_factory.mktemp("real") / "data", environment="test"))
    lorag.tenants.create("acme")
    yield lorag
    lorag.close()


def test_real_model_ingest_search_and_reingest(app):
    report = app.documents.ingest("acme", DOCS)
    assert (report.added, report.failed) == (4, 0)
    assert app.embedder.name == "all-MiniLM-L6-v2" and app.embedder.dimension == 384
    # No word in common with the document: only the embedding can find it.
    hits = app.retrieval.search("acme", "a doctor gave medicine for a disease", mode="dense", k=1)
    assert hits[0].document_id == "physician" and 0.3 < hits[0].score <= 1.0
    assert app.retrieval.search("acme", "cake recipe", mode="hybrid", k=1)[0].document_id == "kitchen"
    long = app.documents.get("acme", "long")
    assert long.chunks > 1
    store = app.retrieval.tenant_index("acme").store
    assert max(r[0] for r in store.db.query("SELECT token_count FROM chunks")) <= 254
    again = app.documents.ingest("acme", DOCS)
    assert (again.unchanged, again.chunks_embedded) == (4, 0)


def test_bf16_document_embeddings_match_float32_and_queries_stay_float32():
    import numpy as np

    from retrieval.embedders import SentenceTransformerEmbedder
    from retrieval.settings import EmbedderSettings

    full, half = (SentenceTransformerEmbedder(EmbedderSettings(document_precision=p))
                  for p in ("float32", "bfloat16"))
    texts = [d.text for d in DOCS]
    a, b = full.embed_documents(texts), half.embed_documents(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999
    query = "a doctor gave medicine for a disease"
    assert np.array_equal(full.embed_query(query), half.embed_query(query))
    assert np.argmax(a @ half.embed_query(query)) == np.argmax(b @ half.embed_query(query)) == 0
