"""Vector indexes beyond the conformance suite (tests/unit/test_conformance_vector_indexes.py):
the registry, HNSW's rebuild and beam rules, and the index file as a cache."""

import numpy as np
import pytest

from retrieval.settings import IndexSettings
from retrieval.vector_index import (CorruptIndexFile, IndexHeader, create_index, read_index_file,
                                    vector_indexes, write_index_file)

SETTINGS = IndexSettings(hnsw_m=16, hnsw_ef_construction=64, hnsw_ef_search=64)


def test_registry_lists_kinds_and_refuses_unknown():
    from lorag.core.errors import UnknownName

    assert vector_indexes.names() == ["flat", "hnsw"]
    with pytest.raises(UnknownName) as caught:
        create_index("annoy", 8, SETTINGS)
    assert "flat, hnsw" in caught.value.message


def test_hnsw_asks_for_rebuild_after_many_removals():
    index = create_index("hnsw", 8, SETTINGS)
    index.add(np.arange(1, 11, dtype=np.int64), np.eye(10, 8, dtype=np.float32) + 0.01)
    index.remove(np.array([1, 2], dtype=np.int64))
    assert not index.needs_rebuild()
    index.remove(np.array([3, 4], dtype=np.int64))
    assert index.needs_rebuild()


def test_hnsw_query_beam_grows_with_the_square_root_of_the_index():
    index = create_index("hnsw", 8, SETTINGS.model_copy(update={"hnsw_ef_search_per_sqrt": 2.0}))
    vectors = np.random.default_rng(0).standard_normal((10_000, 8)).astype(np.float32)
    index.add(np.arange(1, 101), vectors[:100])
    assert index.ef_search(10) == 64 and index.ef_search(100) == 100  # the floor, then k
    index.add(np.arange(101, 10_001), vectors[100:])
    assert index.ef_search(10) == 200  # 2 x sqrt(10,000)
    fixed = create_index("hnsw", 8, SETTINGS.model_copy(update={"hnsw_ef_search_per_sqrt": 0}))
    fixed.add(np.arange(1, 10_001), vectors)
    assert fixed.ef_search(10) == 64


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_file_round_trip_and_damage(tmp_path, kind):
    index = create_index(kind, 4, SETTINGS)
    index.add(np.array([1, 2], dtype=np.int64), np.eye(2, 4, dtype=np.float32))
    path = tmp_path / "index.faiss"
    header = IndexHeader(kind, 4, "fake-4", covered=2, generation=3)
    write_index_file(path, header, index.to_bytes())
    read_header, read_index = read_index_file(path, SETTINGS)
    assert read_header == header and read_index.ids().tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]  # no temp file left
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptIndexFile):
        read_index_file(path, SETTINGS)


def test_only_old_temp_files_of_killed_writers_are_removed(tmp_path):
    import os
    import time

    from retrieval.vector_index import remove_stale_temp_files

    path = tmp_path / "index.faiss"
    old, fresh = tmp_path / "index.faiss.abc.tmp", tmp_path / "index.faiss.def.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    remove_stale_temp_files(path)
    assert not old.exists() and fresh.exists()
