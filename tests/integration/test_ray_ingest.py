"""``lorag ingest --ray``: Ray Data embedding on the session's local Ray cluster
(tests/fixtures_ray.py: 2 CPUs, a 500 MB object store, no dashboard), against local ingestion of the same
documents with the real embedder."""

from __future__ import annotations

import os
import signal
import threading
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from lorag.app.container import Lorag  # noqa: E402
from lorag.app.settings import RaySettings, Settings  # noqa: E402
from lorag.cluster.ingest import ray_ingestion  # noqa: E402
from retrieval.settings import EmbedderSettings, RetrievalSettings  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORPUS = Path(str(files("lorag") / "demo_assets" / "corpus" / "acme"))


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's local cluster (tests/fixtures_ray.py)."""
    return ray_cluster


def ingested(app: Lorag) -> dict[str, dict[str, np.ndarray]]:
    """Each document's chunk texts with their vectors, as stored."""
    store = app.retrieval.tenant_index("acme").store
    dimension = app.embedder.dimension
    return {doc_id: store.vectors_by_text([doc_id], dimension)
            for doc_id in sorted(store.document_hashes())}


def settings(data_dir: Path, backend: str = "auto", **ray_settings) -> Settings:
    """float32 embedding: bfloat16 (the default where the CPU has it) rounds differently
    in differently composed batches, ~1e-3 apart; float32 shows the vectors are the same.
    ``backend`` the same on both sides: ONNX (auto on a VNNI CPU) embeds in the actors
    from the driver's OnnxEncoding, sentence-transformers loads the embedder there."""
    embedder = EmbedderSettings(backend=backend, document_precision="float32")
    return Settings(data_dir=data_dir, environment="test",
                    retrieval=RetrievalSettings(embedder=embedder),
                    ray=RaySettings(**ray_settings))


@pytest.mark.parametrize("backend", ["onnx", "sentence-transformers"])
def test_ray_data_ingestion_stores_what_local_ingestion_stores(cluster, tmp_path, backend):
    local = Lorag(settings(tmp_path / "local", backend))
    on_ray = ray_ingestion(settings(tmp_path / "ray", backend, ingest_batch_size=16,
                                    ingest_commit_chunks=32))
    try:
        for app in (local, on_ray):
            app.tenants.create("acme")
        expected = local.documents.ingest("acme", [CORPUS])
        report = on_ray.documents.ingest("acme", [CORPUS])
        assert report.failed == expected.failed == 0
        encoding = on_ray.documents.embed_documents.encoding()  # what the actors loaded
        assert (encoding is not None) == (backend == "onnx")
        assert (report.added, report.chunks_embedded) == (expected.added, expected.chunks_embedded)
        assert report.added == len(list(CORPUS.glob("*.md")))
        ours, theirs = ingested(on_ray), ingested(local)
        assert ours.keys() == theirs.keys()
        for doc_id, chunks in theirs.items():
            assert ours[doc_id].keys() == chunks.keys(), doc_id  # the same chunk texts
            for text, vector in chunks.items():
                np.testing.assert_allclose(ours[doc_id][text], vector, atol=1e-5)
        again = on_ray.documents.ingest("acme", [CORPUS])
        assert (again.unchanged, again.chunks_embedded, again.added) == (report.added, 0, 0)
        hits = on_ray.retrieval.search("acme", "How long is the warranty?", k=1)
        assert hits and "warranty" in hits[0].document_id
    finally:
        local.close()
        on_ray.close()


def descendants_named(marker: str) -> list[int]:
    """PIDs of this process's descendants (the local cluster's workers) whose command line
    holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and _descends_from(int(entry), os.getpid()):
            found.append(int(entry))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        pid = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("PPid:")))
        if pid == ancestor:
            return True
    return False


def test_an_embedding_worker_killed_mid_ingest_is_restarted_and_loses_nothing(cluster,
                                                                               tmp_path):
    words = "warranty return robot mower kettle battery charge schedule firmware app".split()
    docs = [{"id": f"doc-{i:02d}", "title": f"Document {i}",
             "text": " ".join(words[(i + j) % len(words)] for j in range(120)) + f" {i}."}
            for i in range(12)]
    app = ray_ingestion(settings(tmp_path / "data", ingest_batch_size=2,
                                 ingest_commit_chunks=6))
    acknowledged: list[str] = []
    killed: list[int] = []
    first_commit = threading.Event()

    def kill_a_worker() -> None:
        first_commit.wait(300)
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for pid in descendants_named("MapBatches(EmbedBatch)"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    def on_commit(ids: list[str]) -> None:
        acknowledged.extend(ids)
        first_commit.set()

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    try:
        app.tenants.create("acme")
        # Ray Data restarts the dead actor and retries its batches: the run completes
        first = app.documents.ingest("acme", docs, on_commit=on_commit)
        killer.join(300)
        assert killed, "no embedding worker was seen to kill"
        assert (first.added, first.failed) == (len(docs), 0)
        stored = app.retrieval.tenant_index("acme").store.document_hashes()
        assert sorted(acknowledged) == sorted(stored) == [d["id"] for d in docs]
        again = app.documents.ingest("acme", docs)
        assert (again.unchanged, again.chunks_embedded) == (len(docs), 0)
    finally:
        app.close()
