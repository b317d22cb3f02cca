"""``lorag ingest --ray``: Ray Data embedding on a local Ray cluster started by the test
(2 CPUs, a 500 MB object store, no dashboard), against local ingestion of the same
documents with the real embedder."""

from __future__ import annotations

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
def cluster():
    ray.init(num_cpus=2, object_store_memory=500_000_000, include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def ingested(app: Lorag) -> dict[str, dict[str, np.ndarray]]:
    """Each document's chunk texts with their vectors, as stored."""
    store = app.retrieval.tenant_index("acme").store
    dimension = app.embedder.dimension
    return {doc_id: store.vectors_by_text([doc_id], dimension)
            for doc_id in sorted(store.document_hashes())}


def settings(data_dir: Path, **ray_settings) -> Settings:
    """float32 embedding: bfloat16 (the default where the CPU has it) rounds differently
    in differently composed batches, ~1e-3 apart; float32 shows the vectors are the same."""
    embedder = EmbedderSettings(document_precision="float32")
    return Settings(data_dir=data_dir, environment="test",
                    retrieval=RetrievalSettings(embedder=embedder),
                    ray=RaySettings(**ray_settings))


def test_ray_data_ingestion_stores_what_local_ingestion_stores(cluster, tmp_path):
    local = Lorag(settings(tmp_path / "local"))
    on_ray = ray_ingestion(settings(tmp_path / "ray", ingest_batch_size=16,
                                    ingest_commit_chunks=32))
    try:
        for app in (local, on_ray):
            app.tenants.create("acme")
        expected = local.documents.ingest("acme", [CORPUS])
        report = on_ray.documents.ingest("acme", [CORPUS])
        assert report.failed == expected.failed == 0
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
