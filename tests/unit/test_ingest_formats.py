"""Office files, e-books, mail, PDFs with tables, CSV: each fixture (made by the tests
with the format's own library) is searchable, its sentences cited at their section,
slide, page or sheet, and a table row's cells stay in one chunk."""

from __future__ import annotations

import pytest

from ingest.chunking import Chunker
from ingest.structure import Segment
from ingest.types import describe_location
from lorag.app.chat import _citation
from lorag.app.container import Lorag
from lorag.testing import documents
from lorag.testing.settings import fast_settings
from retrieval.embedders import FakeEmbedder


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    expected = documents.write_all(root / "files")
    app = Lorag(fast_settings(root / "data", max_tokens=64))
    app.tenants.create("acme")
    report = app.documents.ingest("acme", [root / "files"])
    yield app, report, expected
    app.close()


def test_every_format_ingests(ingested):
    app, report, expected = ingested
    assert (report.added, report.failed, report.skipped) == (len(expected), 0, 0), report.failures
    titles = {d.id: d.title for d in app.documents.list("acme")}
    assert titles["files/handbook.docx"] == "Gadgetco warranty handbook"
    assert titles["files/recall.eml"] == "Recall of the toaster T3"
    assert titles["files/guide.epub"] == "The Gadgetco guide"


CASES = [(name, expect) for name, (_, expects) in documents.FIXTURES.items() for expect in expects]


@pytest.mark.parametrize("name,expect", CASES, ids=[f"{n}:{e.query}" for n, e in CASES])
def test_sentence_is_found_and_cited_at_its_place(ingested, name, expect):
    app, _, _ = ingested
    hits = app.retrieval.search("acme", expect.query, k=5, mode="lexical")
    found = [h for h in hits if expect.sentence in h.text]
    assert found, [(h.document_id, h.text) for h in hits]
    hit = found[0]
    assert hit.document_id == f"files/{name}"
    assert describe_location(hit.metadata) == (expect.location or None)
    assert _citation(1, hit).location == (expect.location or None)


def test_table_rows_stay_whole_in_one_chunk(ingested):
    app, _, _ = ingested
    row = " | ".join(documents.TABLE_ROW)
    hits = app.retrieval.search("acme", "Turbo blender X9 1200 watts", k=5, mode="lexical")
    assert any(f"| {row} |" in h.text for h in hits)
    assert not any("Turbo blender X9" in h.text and row not in h.text for h in hits)


def test_a_large_table_is_split_by_rows_with_its_header_repeated():
    embedder = FakeEmbedder()
    chunker = Chunker(embedder, max_tokens=40, overlap_tokens=8)
    lines = ["| Model | Power | Price |"] + [f"| Model {n} | {n} watts | {n} euros |"
                                            for n in range(60)]
    text = "Intro text.\n\n" + "\n".join(lines)
    start = len("Intro text.\n\n")
    chunks = chunker.chunk_segments(text, (Segment(0, start - 2, {"section": "Intro"}),
                                           Segment(start, len(text), {"section": "T"}, True)))
    table = [c for c in chunks if c.location == {"section": "T"}]
    assert len(table) > 3 and chunks[0].location == {"section": "Intro"}
    assert all(c.text.split("\n")[0] == lines[0] for c in table)
    assert all(c.tokens <= chunker.limit for c in chunks)
    rows = [line for c in table for line in c.text.split("\n")[1:] if line != lines[0]]
    assert rows == lines[1:]  # every row once, whole, in order
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(text[c.start:c.end] in c.text for c in table)


def test_a_changed_docx_replaces_its_chunks_and_an_unchanged_one_embeds_nothing(tmp_path):
    app = Lorag(fast_settings(tmp_path / "data", max_tokens=64))
    try:
        app.tenants.create("acme")
        path = tmp_path / "handbook.docx"
        path.write_bytes(documents.docx_bytes())
        assert app.documents.ingest("acme", [path]).added == 1
        again = app.documents.ingest("acme", [path])
        assert (again.unchanged, again.chunks_embedded) == (1, 0)
        import docx

        document = docx.Document(path)
        document.add_heading("Recycling", level=1)
        document.add_paragraph("Old appliances are collected for recycling at no charge.")
        document.save(path)
        changed = app.documents.ingest("acme", [path])
        assert changed.updated == 1 and 0 < changed.chunks_embedded
        hits = app.retrieval.search("acme", "appliances collected recycling", k=3, mode="lexical")
        assert describe_location(hits[0].metadata) == "Recycling"
    finally:
        app.close()


def test_markdown_headings_and_html_main_content(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "faq.md").write_text("# FAQ\n\nIntro.\n\n## Shipping\n\nParcels to Iceland take "
                                   "nine days.\n\n```\n# not a heading\n```\n")
    (folder / "page.html").write_text(
        "<html><head><title>Care</title></head><body><nav>Home | Shop | Cart</nav>"
        "<article><h1>Care</h1><p>Oil the wooden cutting board every month with food-grade "
        "mineral oil so that it never cracks or warps in a dry kitchen.</p></article>"
        "<footer>Copyright Gadgetco</footer></body></html>")
    app = Lorag(fast_settings(tmp_path / "data", max_tokens=64))
    try:
        app.tenants.create("acme")
        assert app.documents.ingest("acme", [folder]).added == 2
        hit = app.retrieval.search("acme", "parcels Iceland", k=1, mode="lexical")[0]
        assert describe_location(hit.metadata) == "FAQ > Shipping"
        assert "# not a heading" in app.retrieval.document_texts("acme")[0] or \
            "# not a heading" in app.retrieval.document_texts("acme")[1]
        hit = app.retrieval.search("acme", "wooden cutting board oil", k=1, mode="lexical")[0]
        assert hit.title == "Care" and describe_location(hit.metadata) == "Care"
        assert not any("Copyright" in t or "Cart" in t for t in app.retrieval.document_texts("acme"))
    finally:
        app.close()


def test_office_files_upload_over_http_and_list_with_their_titles(tmp_path):
    from fastapi.testclient import TestClient

    from server.app import create_app

    from tests.unit.chat_fakes import FakeEngine

    app = Lorag(fast_settings(tmp_path / "data", max_tokens=64))
    app.engine = FakeEngine()  # the HTTP app starts its engine; none is needed here
    app.tenants.create("acme")
    key = {"Authorization": f"Bearer {app.tenants.issue_key('acme').secret}"}
    files = [("files", (name, make(), "application/octet-stream"))
             for name, (make, _) in documents.FIXTURES.items()]
    try:
        with TestClient(create_app(app)) as client:
            response = client.post("/v1/documents", headers=key, files=files)
            assert response.status_code == 202, response.text
            assert app.documents.wait(response.json()["id"], timeout=120)
            job = client.get(f"/v1/jobs/{response.json()['id']}", headers=key).json()
            assert (job["status"], job["completed"], job["failed"]) == (
                "succeeded", len(files), 0), job
            listed = client.get("/v1/documents", headers=key).json()["data"]
        assert {d["id"] for d in listed} == set(documents.FIXTURES)
        assert {d["id"]: d["title"] for d in listed}["review.pptx"] == "review.pptx"
    finally:
        app.close()
