"""The conformance suite every VectorIndex passes (``retrieval.vector_index``).

Mix ``VectorIndexConformance`` into a test class that provides an ``index_kind`` fixture
naming a kind registered in ``retrieval.vector_index.vector_indexes``; iterate the
registry so that a new kind runs the suite without a line of test code::

    @pytest.fixture(params=vector_indexes.names())
    def index_kind(request):
        return request.param

    class TestVectorIndexes(VectorIndexConformance):
        pass

The ``index_settings`` fixture (small HNSW parameters) may be overridden. Data is a few
hundred random unit vectors, so the whole suite runs in well under a second per kind.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.settings import IndexSettings
from retrieval.vector_index import VectorIndex, create_index, vector_indexes

#: The least recall@10 an approximate kind must reach on the suite's small random data.
MIN_RECALL = 0.95


def unit_vectors(rows: int, dimension: int, seed: int = 0) -> np.ndarray:
    """``rows`` random float32 vectors of length 1."""
    vectors = np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """The ids of the ``k`` best inner products, by brute force."""
    return ids[np.argsort(-(vectors @ query), kind="stable")[:k]].tolist()


def int64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


class VectorIndexConformance:
    """What every VectorIndex promises; see the module docstring for the fixtures."""

    @pytest.fixture
    def index_settings(self) -> IndexSettings:
        return IndexSettings(hnsw_m=16, hnsw_ef_construction=64, hnsw_ef_search=64)

    @pytest.fixture
    def make(self, index_kind, index_settings):
        """``make(dimension) -> VectorIndex``, a new empty index of the kind under test."""
        return lambda dimension: create_index(index_kind, dimension, index_settings)

    @pytest.fixture
    def reload(self, index_kind, index_settings):
        """``reload(index) -> VectorIndex`` through ``to_bytes`` and the class's ``from_bytes``."""
        cls = vector_indexes.get(index_kind)
        return lambda index: cls.from_bytes(index.to_bytes(), index.dimension, index_settings)

    # -- construction ----------------------------------------------------------------------

    def test_new_index_is_empty_and_describes_itself(self, make, index_kind):
        index: VectorIndex = make(8)
        assert (index.kind, index.dimension, len(index)) == (index_kind, 8, 0)
        assert index.ids().tolist() == [] and not index.needs_rebuild()

    def test_search_of_an_empty_index_finds_nothing(self, make):
        found, scores = make(8).search(unit_vectors(1, 8)[0], 5)
        assert len(found) == 0 and len(scores) == 0

    # -- add and search --------------------------------------------------------------------

    def test_each_vector_finds_itself_first_best_first(self, make):
        index = make(16)
        ids, vectors = np.arange(100, 300, dtype=np.int64), unit_vectors(200, 16)
        index.add(ids, vectors)
        assert len(index) == 200 and index.ids().tolist() == ids.tolist()
        for row in (0, 57, 199):
            found, scores = index.search(vectors[row], 5)
            assert found.dtype == np.int64 and len(found) == len(scores) == 5
            assert found[0] == ids[row] and abs(scores[0] - 1.0) < 1e-4
            assert list(scores) == sorted(scores, reverse=True)
            assert found.tolist()[:3] == exact_top(ids, vectors, vectors[row], 3)

    def test_scores_are_inner_products(self, make):
        index = make(16)
        ids, vectors = np.arange(1, 21, dtype=np.int64), unit_vectors(20, 16, seed=6)
        index.add(ids, vectors)
        query = unit_vectors(1, 16, seed=7)[0]
        found, scores = index.search(query, 5)
        expected = {int(i): float(v @ query) for i, v in zip(ids, vectors)}
        assert [round(float(s), 4) for s in scores] == [round(expected[int(i)], 4) for i in found]

    def test_recall_on_random_data(self, make):
        index = make(32)
        ids, vectors = np.arange(1, 1001, dtype=np.int64), unit_vectors(1000, 32, seed=8)
        index.add(ids, vectors)
        queries = unit_vectors(30, 32, seed=9)
        hits = sum(len(set(index.search(q, 10)[0].tolist()) & set(exact_top(ids, vectors, q, 10)))
                   for q in queries)
        assert hits / (10 * len(queries)) >= MIN_RECALL

    def test_asking_for_more_than_present_returns_all(self, make):
        index = make(8)
        index.add(int64(7, 8), unit_vectors(2, 8, seed=4))
        found, _ = index.search(unit_vectors(1, 8, seed=5)[0], 10)
        assert sorted(found.tolist()) == [7, 8]
        assert len(index.search(unit_vectors(1, 8, seed=5)[0], 0)[0]) == 0

    def test_adds_accumulate_and_ids_come_sorted(self, make):
        index = make(8)
        vectors = unit_vectors(6, 8, seed=10)
        index.add(int64(30, 10, 20), vectors[:3])
        index.add(int64(), np.zeros((0, 8), dtype=np.float32))
        index.add(int64(60, 40, 50), vectors[3:])
        assert len(index) == 6 and index.ids().tolist() == [10, 20, 30, 40, 50, 60]
        assert index.search(vectors[4], 1)[0].tolist() == [40]

    def test_vectors_of_another_dimension_are_refused(self, make):
        index = make(8)
        index.add(int64(1, 2), unit_vectors(2, 8))
        with pytest.raises(ValueError):
            index.add(int64(3, 4), unit_vectors(2, 4))
        with pytest.raises(ValueError):
            index.add(int64(3, 4, 5), unit_vectors(2, 8))  # one vector short
        for query in (unit_vectors(1, 4)[0], unit_vectors(1, 16)[0]):
            with pytest.raises(ValueError):
                index.search(query, 2)
        assert index.ids().tolist() == [1, 2]

    # -- remove and filter -----------------------------------------------------------------

    def test_removed_ids_are_gone_and_unknown_ids_ignored(self, make):
        index = make(16)
        ids, vectors = np.arange(1, 51, dtype=np.int64), unit_vectors(50, 16, seed=1)
        index.add(ids, vectors)
        index.remove(int64(3, 4, 999))
        index.remove(int64())
        assert len(index) == 48 and not {3, 4} & set(index.ids().tolist())
        found, _ = index.search(vectors[2], 50)
        assert not {3, 4} & set(found.tolist()) and len(found) == 48

    def test_search_keeps_to_allowed_live_ids(self, make):
        index = make(16)
        ids, vectors = np.arange(1, 101, dtype=np.int64), unit_vectors(100, 16, seed=2)
        index.add(ids, vectors)
        index.remove(int64(10))
        found, _ = index.search(vectors[0], 10, int64(10, 20, 30, 40, 777))
        assert set(found.tolist()) == {20, 30, 40}
        assert len(index.search(vectors[0], 10, int64())[0]) == 0

    # -- serialisation ---------------------------------------------------------------------

    def test_round_trip_keeps_ids_removals_and_answers(self, make, reload):
        index = make(16)
        ids, vectors = np.arange(1, 41, dtype=np.int64), unit_vectors(40, 16, seed=3)
        index.add(ids, vectors)
        index.remove(int64(5))
        copy = reload(index)
        assert (copy.kind, copy.dimension, len(copy)) == (index.kind, 16, 39)
        assert copy.ids().tolist() == index.ids().tolist()
        assert copy.needs_rebuild() == index.needs_rebuild()
        for row in (4, 7):
            assert [a.tolist() for a in copy.search(vectors[row], 3)] == \
                [a.tolist() for a in index.search(vectors[row], 3)]

    def test_a_reloaded_index_takes_more_changes(self, make, reload):
        vectors = unit_vectors(3, 8, seed=11)
        copy = reload(make(8))
        assert len(copy) == 0
        copy.add(int64(1, 2), vectors[:2])
        copy = reload(copy)
        copy.add(int64(3), vectors[2:])
        copy.remove(int64(1))
        assert copy.ids().tolist() == [2, 3] and copy.search(vectors[2], 1)[0].tolist() == [3]
