"""Answer metrics on hand-computed cases (lorag/app/quality/metrics.py).

Groundedness and citations are checked with a judge whose support is known by
construction (a passage supports a claim when it contains the claim's words), so every
expected value below is computed by hand; the real embedding judge is checked on the
perturbations it exists to catch.
"""

from __future__ import annotations

import numpy as np
import pytest

from lorag.app.quality.metrics import (AnswerMetrics, EmbeddingLexicalJudge, bootstrap_ci,
                                       context_precision, context_recall, paired_difference,
                                       rouge_l, token_f1)
from lorag.app.quality.text import cited_numbers, split_sentences, tokens
from retrieval.embedders import FakeEmbedder, get_embedder
from retrieval.settings import EmbedderSettings


class WordJudge:
    """Support 1.0 when every word of the claim is in the passage, else 0.0."""

    def support(self, claims, passages):
        return np.array([[float(set(tokens(c)) <= set(tokens(p)) and bool(tokens(p)))
                          for p in passages] for c in claims], dtype=np.float32).reshape(
            len(claims), len(passages))


@pytest.fixture(scope="module")
def metrics():
    return AnswerMetrics(FakeEmbedder(), judge=WordJudge(), threshold=0.5)


S1 = "the kettle holds two litres"
S2 = "the mower cuts grass"
S3 = "returns are free within thirty days"


def test_sentences_and_citations():
    assert split_sentences("It boils fast [1]. It is cool.[2] Why? Yes!\n\n- one\n- two") == [
        "It boils fast [1].", "It is cool.[2]", "Why?", "Yes!", "- one", "- two"]
    assert split_sentences("   ") == []
    assert cited_numbers("a [2] b [1][2] c [10]") == [2, 1, 10]


def test_groundedness_counts_supported_sentences(metrics):
    answer = "The kettle holds two litres [1]. The mower flies [2]. Returns are free [3]."
    found = metrics.grounding(answer, [S1, S2, S3])
    # sentence 1 in S1, sentence 2 nowhere ("flies"), sentence 3 in S3 -> 2 of 3
    assert found.groundedness == pytest.approx(2 / 3)
    assert found.unsupported == ("The mower flies [2].",)
    assert [v.best_source for v in found.sentences][::2] == [1, 3]


def test_citation_precision_and_recall_alce(metrics):
    answer = ("The kettle holds two litres [1][2]. "   # [1] supports, [2] does not
              "The mower cuts grass [1]. "             # cites the wrong source
              "Returns are free [3].")                 # right
    scores = metrics.score(question="q", answer=answer, sources=[S1, S2, S3])
    # citations: [1] ok, [2] irrelevant, [1] wrong, [3] ok -> 2 of 4 precise
    assert scores.citation_precision == pytest.approx(2 / 4)
    # sentences whose citations jointly support them: 1 and 3 of 3
    assert scores.citation_recall == pytest.approx(2 / 3)
    assert scores.groundedness == 1.0
    assert scores.invalid_citations == ()


def test_a_citation_needed_only_jointly_is_precise(metrics):
    sources = ["the kettle holds", "two litres"]
    scores = metrics.score(question="q", answer="The kettle holds two litres [1][2].",
                           sources=sources)
    # neither alone supports the sentence; together they do, and each is needed
    assert scores.citation_recall == 1.0 and scores.citation_precision == 1.0


def test_out_of_range_citations_are_never_precise(metrics):
    scores = metrics.score(question="q", answer="The kettle holds two litres [1][7]. "
                           "The mower cuts grass [0].", sources=[S1, S2])
    assert scores.invalid_citations == (7, 0)
    assert scores.citation_precision == pytest.approx(1 / 3)
    assert scores.citation_recall == pytest.approx(1 / 2)


def test_no_citations(metrics):
    scores = metrics.score(question="q", answer="The kettle holds two litres.", sources=[S1])
    assert scores.citation_precision is None  # nothing cited: nothing to be precise about
    assert scores.citation_recall == 0.0
    assert scores.groundedness == 1.0


def test_no_sources(metrics):
    scores = metrics.score(question="q", answer="The kettle holds two litres [1].", sources=[])
    assert scores.groundedness == 0.0
    assert scores.unsupported == ("The kettle holds two litres [1].",)
    assert scores.invalid_citations == (1,)
    assert scores.citation_precision == 0.0 and scores.citation_recall == 0.0


def test_empty_answer(metrics):
    scores = metrics.score(question="How big is it?", answer="  ", sources=[S1],
                           reference="two litres", retrieved_ids=["a"], gold_ids=["a"])
    assert scores.groundedness is None and scores.unsupported == ()
    assert scores.citation_precision is None and scores.citation_recall is None
    assert scores.answer_relevance is None
    assert scores.token_f1 == 0.0 and scores.rouge_l == 0.0
    assert scores.context_precision == 1.0


def test_token_f1_and_rouge_l_by_hand():
    # answer tokens: kettle holds 2 litres (articles dropped); reference: kettle holds 1 7 litres
    assert token_f1("The kettle holds 2 litres.", "A kettle holds 1.7 litres") == pytest.approx(
        2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    # LCS of [y, x, z] and [x, y, z] is 2 -> P = R = 2/3
    assert rouge_l("y x z", "x y z") == pytest.approx(2 / 3)
    # articles are dropped: "b a c" is [b, c]
    assert rouge_l("b a c", "the b c") == 1.0
    assert token_f1("x y", "x y") == 1.0 and rouge_l("x", "y") == 0.0
    assert token_f1("anything", None) is None and rouge_l("anything", None) is None
    assert token_f1("", "") == 1.0


def test_context_precision_and_recall_by_hand():
    retrieved = ["d1", "x", "d2", "y"]
    # gold at ranks 1 and 3: (1/1 + 2/3) / 2
    assert context_precision(retrieved, ["d1", "d2", "d3"]) == pytest.approx((1 + 2 / 3) / 2)
    assert context_recall(retrieved, ["d1", "d2", "d3"]) == pytest.approx(2 / 3)
    assert context_precision(["x"], ["d1"]) == 0.0
    assert context_precision(retrieved, None) is None and context_recall(retrieved, []) is None


def test_bootstrap_intervals():
    same = bootstrap_ci([0.5] * 20)
    assert (same.mean, same.low, same.high, same.n) == (0.5, 0.5, 0.5, 20)
    spread = bootstrap_ci([0.0, 1.0] * 50, seed=1)
    assert spread.low < 0.5 < spread.high and spread.high - spread.low < 0.25
    assert bootstrap_ci([None, None]).mean is None
    diff = paired_difference([1.0, 0.5, None], [0.5, 0.0, 1.0])
    assert (diff.mean, diff.n) == (0.5, 2)
    with pytest.raises(ValueError):
        paired_difference([1.0], [])


@pytest.fixture(scope="module")
def real_judge():
    return EmbeddingLexicalJudge(get_embedder(EmbedderSettings()))  # all-MiniLM-L6-v2


SOURCE = ("The BrewMate smart kettle holds 1.7 litres and boils a full kettle in about four "
          "minutes. The kettle switches off automatically when it is empty.")


@pytest.mark.parametrize("claim, supported", [
    ("The BrewMate smart kettle holds 1.7 litres.", True),
    ("The BrewMate kettle boils a full kettle in roughly four minutes.", True),
    ("The BrewMate smart kettle holds 2.5 litres.", False),                  # number
    ("The MowBot smart kettle holds 1.7 litres.", False),                    # entity
    ("The kettle does not switch off automatically when it is empty.", False),  # negation
    ("Orders ship within two working days.", False),                       # other document
])
def test_the_embedding_judge_catches_swaps(real_judge, claim, supported):
    score = real_judge.support([claim], [SOURCE])[0, 0]
    assert bool(score >= 0.6) is supported, score
