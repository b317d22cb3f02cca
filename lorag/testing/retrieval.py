"""Test support shipped with the library: fast settings, a VectorIndex conformance
suite every implementation must pass, and a writer for tiny BEIR-format folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ingest.settings import ChunkingSettings, IngestSettings
from lorag.app.settings import Settings
from retrieval.settings import EmbedderSettings, IndexSettings, RetrievalSettings
from retrieval.vector_index import VectorIndex, create_index


def fast_settings(data_dir: Path, *, max_tokens: int = 32, overlap_tokens: int = 8,
                  commit_chunks: int = 8, index: IndexSettings | None = None,
                  **retrieval) -> Settings:
    """Settings for unit tests: the fake embedder, small chunks, small commit groups."""
    return Settings(
        data_dir=data_dir, environment="test",
        retrieval=RetrievalSettings(embedder=EmbedderSettings(backend="fake"),
                                    index=index or IndexSettings(), **retrieval),
        ingest=IngestSettings(chunking=ChunkingSettings(max_tokens=max_tokens,
                                                        overlap_tokens=overlap_tokens),
                              commit_chunks=commit_chunks))


# --- VectorIndex conformance -------------------------------------------------------------

def _unit(rows: int, dimension: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _exact(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ query
    return ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def check_add_and_search(kind: str, settings: IndexSettings) -> None:
    index = create_index(kind, 16, settings)
    ids, vectors = np.arange(100, 300, dtype=np.int64), _unit(200, 16)
    index.add(ids, vectors)
    assert len(index) == 200 and index.ids().tolist() == ids.tolist()
    for row in (0, 57, 199):
        found, scores = index.search(vectors[row], 5)
        assert found[0] == ids[row] and abs(scores[0] - 1.0) < 1e-4
        assert list(scores) == sorted(scores, reverse=True)
        assert found.tolist()[:3] == _exact(ids, vectors, vectors[row], 3)


def check_remove(kind: str, settings: IndexSettings) -> None:
    index = create_index(kind, 16, settings)
    ids, vectors = np.arange(1, 51, dtype=np.int64), _unit(50, 16, seed=1)
    index.add(ids, vectors)
    index.remove(np.array([3, 4, 999], dtype=np.int64))
    assert len(index) == 48 and 3 not in index.ids() and 4 not in index.ids()
    found, _ = index.search(vectors[2], 50)
    assert 3 not in found and 4 not in found and len(found) == 48


def check_allowed(kind: str, settings: IndexSettings) -> None:
    index = create_index(kind, 16, settings)
    ids, vectors = np.arange(1, 101, dtype=np.int64), _unit(100, 16, seed=2)
    index.add(ids, vectors)
    index.remove(np.array([10], dtype=np.int64))
    allowed = np.array([10, 20, 30, 40], dtype=np.int64)
    found, _ = index.search(vectors[0], 10, allowed)
    assert set(found.tolist()) == {20, 30, 40}


def check_empty(kind: str, settings: IndexSettings) -> None:
    index = create_index(kind, 8, settings)
    found, scores = index.search(_unit(1, 8)[0], 5)
    assert len(found) == 0 and len(scores) == 0 and len(index) == 0


def check_round_trip(kind: str, settings: IndexSettings) -> None:
    from retrieval.vector_index import vector_indexes

    index = create_index(kind, 16, settings)
    ids, vectors = np.arange(1, 41, dtype=np.int64), _unit(40, 16, seed=3)
    index.add(ids, vectors)
    index.remove(np.array([5], dtype=np.int64))
    copy: VectorIndex = vector_indexes.get(kind).from_bytes(index.to_bytes(), 16, settings)
    assert copy.ids().tolist() == index.ids().tolist()
    assert copy.search(vectors[7], 3)[0].tolist() == index.search(vectors[7], 3)[0].tolist()


def check_more_than_present(kind: str, settings: IndexSettings) -> None:
    index = create_index(kind, 8, settings)
    index.add(np.array([7, 8], dtype=np.int64), _unit(2, 8, seed=4))
    found, _ = index.search(_unit(1, 8, seed=5)[0], 10)
    assert sorted(found.tolist()) == [7, 8]


CONFORMANCE = [check_add_and_search, check_remove, check_allowed, check_empty,
               check_round_trip, check_more_than_present]


# --- BEIR-format folders -----------------------------------------------------------------

def write_beir(folder: Path, corpus: list[dict], queries: list[dict],
               qrels: list[tuple[str, str, int]], split: str = "test") -> Path:
    """Write corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}) and
    qrels/<split>.tsv (query-id, corpus-id, score, with a header line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder
