"""Loading and normalising inputs; every kind of bad document fails alone, with its code."""

import pytest

from ingest.normalize import normalize_text
from ingest.readers import ReadContext
from ingest.readers.html_reader import read_html
from ingest.settings import FormatSettings
from ingest.structure import assemble
from ingest.types import DocumentInput
from lorag.app.container import Lorag
from lorag.testing.settings import fast_settings


@pytest.fixture
def app(tmp_path):
    settings = fast_settings(tmp_path / "data")
    settings.ingest.max_document_bytes = 2000
    lorag = Lorag(settings)
    lorag.tenants.create("acme")
    yield lorag
    lorag.close()


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` (offsets computed, so readers accept it)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_normalize_text_unicode_and_whitespace():
    raw = "\n\n ﬁne\u00a0\u00a0print\r\n\r\n\r\n\r\nnext\tpara\x07graph \u200b\n\tindented  x  "
    assert normalize_text(raw) == " fine print\n\nnext paragraph\n    indented x"
    assert normalize_text("e\u0301") == "é"  # composed


def test_html_reader_drops_scripts_and_keeps_paragraphs():
    parsed = read_html((
        "<html><head><title>Weather &amp; more</title><style>p{color:red}</style></head>"
        "<body><script>alert(1)</script><main><h1>Rain</h1><p>Rain falls\nfrom clouds.</p>"
        "<ul>\n  <li>drizzle</li>\n  <li>storm</li></ul><pre>if x:\n    y = 2</pre></main>"
        "</body></html>"
    ).encode(), ReadContext("w.html", FormatSettings()))
    text, _ = assemble(parsed.blocks)
    assert parsed.title == "Weather & more"
    assert normalize_text(text) == text
    assert text == "Rain\n\nRain falls from clouds.\n\ndrizzle\n\nstorm\n\nif x:\n    y = 2"


def test_each_file_type_loads(app, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("plain text about otters")
    (folder / "b.md").write_text("# Beavers\n\nBeavers build dams.")
    (folder / "c.rst").write_text("Herons\n======\n\nHerons fish patiently.")
    (folder / "d.html").write_text("<title>Owls</title><p>Owls hunt at night.</p>")
    (folder / "e.pdf").write_bytes(make_pdf("Pelicans carry fish in their pouch"))
    (folder / "f.rst.txt").write_text("Sphinx source\n=============\n\nFrom _sources.")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")
    (folder / ".hidden.md").write_text("never read")
    report = app.documents.ingest("acme", [folder])
    assert (report.added, report.failed, report.skipped) == (6, 0, 1)
    titles = {d.id: d.title for d in app.documents.list("acme")}
    assert titles == {"in/a.txt": "a.txt", "in/b.md": "Beavers", "in/c.rst": "Herons",
                      "in/d.html": "Owls", "in/e.pdf": "e.pdf", "in/f.rst.txt": "Sphinx source"}
    hits = app.retrieval.search("acme", "pelicans pouch", mode="lexical")
    assert hits[0].document_id == "in/e.pdf" and "Pelicans carry fish" in hits[0].text


def test_bad_documents_fail_alone_with_codes(app, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 20)
    (bad / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (bad / "blank.md").write_text(" \n\n \t ")
    (bad / "huge.txt").write_text("x " * 2000)
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (bad / "lines.jsonl").write_text('{"id": "ok", "text": "a good line"}\n{not json}\n'
                                     '{"id": "no-text"}\n{"id": "m", "text": "t", "metadata": 3}\n')
    unsupported = tmp_path / "table.numbers"
    unsupported.write_bytes(b"PK\x03\x04")
    good = DocumentInput("good", "a fine document about lighthouses")
    inputs = [bad, unsupported, tmp_path / "missing.txt", good,
              {"id": "nul", "text": "\x00\x01\x02\x03 garbage"}, {"id": "", "text": "no id"},
              {"id": "dup", "text": "first"}, {"id": "dup", "text": "second"},
              {"id": "surrogate", "text": "bad \ud800 char"}, 42]
    report = app.documents.ingest("acme", inputs)
    codes = {(f.id or f.source): f.code for f in report.failures}
    assert codes == {
        "bad/binary.txt": "binary_content", "bad/latin1.txt": "invalid_encoding",
        "bad/blank.md": "empty_document", "bad/huge.txt": "document_too_large",
        "bad/broken.pdf": "invalid_pdf", "bad/lines.jsonl:2": "invalid_jsonl",
        "bad/lines.jsonl:3": "invalid_jsonl", "m": "invalid_document",
        "table.numbers": "unsupported_type", str(tmp_path / "missing.txt"): "file_not_found",
        "nul": "binary_content", None: "invalid_document", "dup": "duplicate_id",
        "surrogate": "invalid_encoding",
    } | {None: "invalid_document"}
    assert report.failed == len(report.failures) == 15
    assert report.added == 3  # ok (jsonl line 1), good, the first dup
    assert sorted(d.id for d in app.documents.list("acme")) == ["dup", "good", "ok"]
    assert all(f.message for f in report.failures)
