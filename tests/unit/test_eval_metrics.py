"""trec_eval's nDCG@k and recall@k, checked on cases computed by hand."""

import math

import pytest

from lorag.app.evaluation import document_scores, ndcg_at_k, recall_at_k, score_run, trec_ranking
from retrieval.types import SearchHit

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_graded_ndcg_by_hand():
    judged = {"d1": 2, "d2": 1, "d3": 0}
    scores = {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6}
    # ranks: d3 (gain 0), d1 (2 / log2 3), d4 (unjudged, 0), d2 (1 / log2 5)
    dcg = 2 / LOG2_3 + 1 / LOG2_5            # 1.26186 + 0.43068
    ideal = 2 / 1 + 1 / LOG2_3               # 2 + 0.63093
    assert ndcg_at_k(scores, judged, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(scores, judged, 10) == pytest.approx(0.64332, abs=1e-5)


def test_ideal_dcg_counts_relevant_documents_never_retrieved():
    assert ndcg_at_k({"a": 1.0}, {"a": 1, "b": 1}, 10) == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_ties_sort_by_document_id_descending_like_trec_eval():
    assert trec_ranking({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    assert ndcg_at_k({"a": 1.0, "b": 1.0}, {"a": 1}, 10) == pytest.approx(1 / LOG2_3)


def test_cutoff_and_non_positive_levels():
    scores = {f"d{i:02d}": 1.0 - i / 100 for i in range(20)}
    assert ndcg_at_k(scores, {"d10": 1}, 10) == 0.0           # rank 11
    assert ndcg_at_k(scores, {"d09": 1}, 10) == pytest.approx(1 / math.log2(11))
    assert ndcg_at_k(scores, {"d00": -1, "d01": 0}, 10) == 0.0  # nothing relevant
    assert ndcg_at_k({}, {"x": 1}, 10) == 0.0


def test_recall_by_hand():
    scores = {"a": 3.0, "x": 2.5, "c": 2.0}
    assert recall_at_k(scores, {"a": 1, "b": 2, "c": 1, "z": 0}, 10) == pytest.approx(2 / 3)
    assert recall_at_k(scores, {"a": 1, "c": 1}, 1) == pytest.approx(1 / 2)
    assert recall_at_k(scores, {"n": 0}, 10) == 0.0


def test_document_score_is_best_chunk_and_query_id_is_ignored():
    hits = [SearchHit(1, "d1", 0, "", None, None, score=0.5),
            SearchHit(2, "d2", 0, "", None, None, score=0.7),
            SearchHit(3, "d1", 1, "", None, None, score=0.9),
            SearchHit(4, "q1", 0, "", None, None, score=1.0)]
    assert document_scores(hits, "q1") == {"d1": 0.9, "d2": 0.7}
    assert list(document_scores(hits, "q1", depth=1)) == ["d1"]


def test_means_are_over_queries_in_percent():
    run = {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"c": 1}}
    assert score_run(run, qrels) == {"ndcg@10": 50.0, "recall@10": 50.0, "queries": 2}
