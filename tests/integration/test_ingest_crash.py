"""Crash safety: an ingesting process SIGKILLed at arbitrary moments loses nothing it
reported, and leaves a store and index that agree (no orphan vectors)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorag.app.container import Lorag
from retrieval.settings import IndexSettings
from lorag.testing.settings import fast_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    from ingest.types import DocumentInput
    from lorag.app.container import Lorag
    from retrieval.settings import IndexSettings
    from lorag.testing.settings import fast_settings

    data_dir, version, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = Lorag(fast_settings(data_dir, commit_chunks=6, index=IndexSettings(save_seconds=0)))
    if not app.tenants.exists("acme"):
        app.tenants.create("acme")
    docs = [DocumentInput(f"doc{i}", f"v{version} marker{i}x " + " ".join(
                f"w{(i * 7 + j) % 50}" for j in range(60))) for i in range(count)]

    def report(ids):
        print(" ".join(ids), flush=True)

    app.documents.ingest("acme", docs, on_commit=report)
    print("DONE", flush=True)
""")


def run_and_kill(data_dir: Path, version: int, count: int, kill_after: int) -> list[str]:
    """Run the child until it reported ``kill_after`` documents, SIGKILL it, return the ids."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(version), str(count)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    reported: list[str] = []
    for line in proc.stdout:
        if line.strip() == "DONE":
            break
        reported += line.split()
        if len(reported) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    return reported


def check_consistent(data_dir: Path, reported: list[str], version: int) -> None:
    app = Lorag(fast_settings(data_dir))
    index = app.retrieval.tenant_index("acme")
    store = index.store
    assert store.db.query_one("PRAGMA integrity_check")[0] == "ok"
    store.db.connection().execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    assert index.vector_ids().tolist() == store.chunk_ids().tolist()  # no orphan, none missing
    counted = dict(store.db.query("SELECT d.id, count(c.id) FROM documents d "
                                  "LEFT JOIN chunks c ON c.document_pk = d.pk GROUP BY d.id"))
    for doc in store.list_documents(10_000, 0):
        assert counted[doc.id] == doc.chunks
    for doc_id in reported:
        number = doc_id.removeprefix("doc")
        hits = app.retrieval.search("acme", f"marker{number}x", mode="lexical", k=1)
        assert [h.document_id for h in hits] == [doc_id]
        assert hits[0].text.startswith(f"v{version} ")
        dense = app.retrieval.search("acme", f"v{version} marker{number}x", mode="dense",
                                     document_ids=[doc_id], k=1)
        assert dense and dense[0].document_id == doc_id
    app.close()


def test_sigkill_mid_ingest_loses_nothing_reported(tmp_path):
    data_dir = tmp_path / "data"
    count = 400
    first = run_and_kill(data_dir, version=1, count=count, kill_after=60)
    assert 60 <= len(first) < count
    check_consistent(data_dir, first, version=1)
    # Resume with changed texts: replacements (deletions, generation bumps) get killed too.
    for version, kill_after in ((2, 150), (3, 7), (3, 250), (4, 33)):
        reported = run_and_kill(data_dir, version=version, count=count, kill_after=kill_after)
        check_consistent(data_dir, reported, version=version)
    last = run_and_kill(data_dir, version=4, count=count, kill_after=10 ** 6)
    check_consistent(data_dir, last, version=4)
    app = Lorag(fast_settings(data_dir))
    assert app.documents.count("acme") == count
    app.close()


def test_damaged_or_missing_index_file_is_rebuilt(tmp_path):
    settings = fast_settings(tmp_path / "data", index=IndexSettings(save_seconds=0))
    app = Lorag(settings)
    app.tenants.create("acme")
    from ingest.types import DocumentInput

    app.documents.ingest("acme", [DocumentInput(f"d{i}", f"text number {i}") for i in range(20)])
    app.close()
    path = app.layout.tenant_index("acme")
    for damage in (lambda: path.write_bytes(path.read_bytes()[:100]), path.unlink):
        damage()
        again = Lorag(settings)
        index = again.retrieval.tenant_index("acme")
        assert index.vector_ids().tolist() == index.store.chunk_ids().tolist()
        assert [h.document_id for h in again.retrieval.search("acme", "number 7", mode="dense",
                                                              k=1)] == ["d7"]
        again.close()
