"""Domain-training texts: a tenant's documents rebuilt from its stored chunks."""

from __future__ import annotations

import numpy as np

from adapters.training.corpus import general_texts
from retrieval.store import ChunkStore, join_chunks
from retrieval.types import ChunkWrite, DocumentWrite

TEXT = "Sweepy X2 vacuums twice a day. It docks itself. The battery lasts ninety minutes."


def _document(doc_id: str, text: str, spans: list[tuple[int, int]]) -> DocumentWrite:
    chunks = [ChunkWrite(i, text[a:b], a, b, 3) for i, (a, b) in enumerate(spans)]
    return DocumentWrite(doc_id, doc_id, None, {}, doc_id, len(text), chunks,
                         np.zeros((len(chunks), 4), dtype=np.float32))


def test_join_chunks_keeps_overlaps_once():
    spans = [(0, 30), (20, 55), (45, len(TEXT))]
    assert join_chunks((a, b, TEXT[a:b]) for a, b in spans) == TEXT
    assert join_chunks([(0, 5, "Hello"), (10, 15, "World")]) == "Hello\n\nWorld"
    assert join_chunks([(0, 5, "Hello"), (3, 8, "changed!")]) == "Hello\n\nchanged!"


def test_tenant_documents_come_back_whole_and_in_order(app):
    store = ChunkStore(app.layout.tenant_store("acme"))
    other = "Returns are free within thirty days."
    store.write([_document("faq", TEXT, [(0, 30), (20, 55), (45, len(TEXT))]),
                 _document("returns", other, [(0, len(other))])], embedder="fake", dimension=4)
    store.close()
    assert app.retrieval.document_texts("acme") == [TEXT, other]
    assert app.retrieval.document_texts("nobody") == []


def test_general_text_is_shipped():
    paragraphs = general_texts()
    assert len(paragraphs) >= 10 and all(len(p) > 200 for p in paragraphs)
