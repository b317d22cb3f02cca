"""Answer metrics without an LLM judge: from the question, the sources the model was
given and its answer, with the embedding model lorag already serves plus lexical overlap.

- groundedness: the share of answer sentences that at least one source supports, and
  the unsupported sentences themselves;
- citation precision and recall as ALCE defines them (Gao et al., 2023): a sentence's
  recall is 1 when the sources it cites support it jointly; a citation is precise when
  it supports its sentence alone, or when the joint support breaks without it;
  a citation number with no source (``[0]``, ``[9]`` of 3) is never precise;
- answer relevance: the cosine of question and answer;
- context precision (rank-weighted, as Ragas) and recall against gold document ids;
- token F1 (SQuAD) and ROUGE-L (LCS F-measure) against a reference answer.

"Supports" is a ``SupportJudge``: by default ``EmbeddingLexicalJudge``; an NLI
cross-encoder can be registered in ``SUPPORT_JUDGES`` by a user who has one.
Metrics that are undefined for an input (no sentences, no citations, no gold ids, no
reference) are None, never a made-up 0 or 1.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from lorag.app.quality.text import (answer_tokens, cited_numbers, content_tokens, has_negation,
                                    is_number, proper_nouns, split_sentences, tokens,
                                    without_citations)
from lorag.core.plugins import Registry
from retrieval.embedders import Embedder

DEFAULT_THRESHOLD = 0.6  # calibrated on the demo corpus: bench/bench_quality.py


@runtime_checkable
class SupportJudge(Protocol):
    """How strongly each passage supports each claim, in [0, 1]."""

    def support(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """A (len(claims), len(passages)) float array; an empty passage supports nothing."""


SUPPORT_JUDGES: Registry[SupportJudge] = Registry("support judge")


@SUPPORT_JUDGES.register("embedding-lexical")
class EmbeddingLexicalJudge:
    """Support = mix of the best sentence cosine and the share of the claim's content
    words found in the passage, halved when the claim brings a number, a negation or a
    name the passage lacks, or flips the negation of its closest passage sentence:
    the changes that turn a copied sentence into a false one while leaving it close in
    embedding space.
    """

    def __init__(self, embedder: Embedder, *, cosine_weight: float = 0.5,
                 mismatch_penalty: float = 0.5, candidates: int = 2, cache_size: int = 20_000):
        self.embedder = embedder
        self.cosine_weight = cosine_weight
        self.mismatch_penalty = mismatch_penalty
        self.candidates = candidates
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def support(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Only the ``candidates`` sentences of each passage sharing the most words with a
        claim are embedded and compared with it: embedding is the cost, and a sentence
        sharing few words with the claim is rarely the one that supports it."""
        scores = np.zeros((len(claims), len(passages)), dtype=np.float32)
        split = [split_sentences(p) for p in passages]
        picks = [[self._candidates(claim, sentences) for sentences in split] for claim in claims]
        vectors = self.vectors(list(claims) + [s for row in picks for chosen in row for s in chosen])
        for j, passage in enumerate(passages):
            if not split[j]:
                continue
            passage_tokens = set(tokens(passage))
            for i, claim in enumerate(claims):
                chosen = picks[i][j]
                scores[i, j] = self._score(claim, vectors[claim], chosen,
                                           np.stack([vectors[s] for s in chosen]), passage_tokens)
        return scores

    def _candidates(self, claim: str, sentences: list[str]) -> list[str]:
        words = set(content_tokens(claim))
        ranked = sorted(sentences, key=lambda s: -len(words.intersection(tokens(s))))
        return ranked[:self.candidates]

    def _score(self, claim: str, vector: np.ndarray, sentences: list[str],
               sentence_vectors: np.ndarray, passage_tokens: set[str]) -> float:
        cosines = sentence_vectors @ vector
        best = int(np.argmax(cosines))
        words = content_tokens(claim)
        novel = [t for t in words if t not in passage_tokens]
        coverage = 1.0 - len(novel) / len(words) if words else 1.0
        score = self.cosine_weight * max(float(cosines[best]), 0.0) + \
            (1 - self.cosine_weight) * coverage
        closest = tokens(sentences[best])
        flipped = has_negation(tokens(claim)) != has_negation(closest)
        new_name = bool(proper_nouns(claim) - passage_tokens)
        # a number must come from the closest sentence: the passage's other numbers
        # (a different price, a different duration) do not support it
        new_number = any(is_number(t) for t in words if t not in closest)
        if flipped or new_name or new_number or any(has_negation([t]) for t in novel):
            score *= self.mismatch_penalty
        return float(min(max(score, 0.0), 1.0))

    def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Normalised vectors of ``texts`` (citation markers removed), cached by text."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            embedded = self.embedder.embed_documents([without_citations(t) for t in missing])
            with self._lock:
                for text, vector in zip(missing, embedded):
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            found = {t: self._cache.get(t) for t in texts}
        if any(v is None for v in found.values()):  # evicted meanwhile by another thread
            again = [t for t, v in found.items() if v is None]
            found.update(zip(again, self.embedder.embed_documents(
                [without_citations(t) for t in again])))
        return found


@dataclass(frozen=True)
class SentenceVerdict:
    """One answer sentence: its best support by any single source, and what it cites."""

    text: str
    support: float
    supported: bool
    best_source: int | None  # 1-based number of the best supporting source
    cited: tuple[int, ...]


@dataclass(frozen=True)
class Grounding:
    """What the grounding guard needs: the share of supported sentences (None for an
    answer without sentences) and the unsupported ones."""

    groundedness: float | None
    unsupported: tuple[str, ...]
    sentences: tuple[SentenceVerdict, ...]


@dataclass(frozen=True)
class AnswerScores:
    groundedness: float | None
    unsupported: tuple[str, ...]
    citation_precision: float | None
    citation_recall: float | None
    invalid_citations: tuple[int, ...]
    answer_relevance: float | None
    context_precision: float | None
    context_recall: float | None
    token_f1: float | None
    rouge_l: float | None
    sentences: tuple[SentenceVerdict, ...] = ()

    NUMERIC = ("groundedness", "citation_precision", "citation_recall", "answer_relevance",
               "context_precision", "context_recall", "token_f1", "rouge_l")

    def metrics(self) -> dict[str, float | None]:
        """The numeric metrics by name (None where undefined for this answer)."""
        return {name: getattr(self, name) for name in self.NUMERIC}

    def to_dict(self) -> dict:
        return asdict(self)


class AnswerMetrics:
    """Scores answers; safe for concurrent use. Sentences with support >= ``threshold``
    count as supported."""

    def __init__(self, embedder: Embedder, *, threshold: float = DEFAULT_THRESHOLD,
                 judge: SupportJudge | None = None):
        self.embedder = embedder
        self.threshold = threshold
        self.judge = judge or EmbeddingLexicalJudge(embedder)

    def grounding(self, answer: str, sources: Sequence[str]) -> Grounding:
        """Groundedness of ``answer`` given the numbered ``sources`` ([1] = sources[0])."""
        sentences = split_sentences(answer)
        if not sentences:
            return Grounding(None, (), ())
        matrix = self.judge.support(sentences, list(sources)) if sources else \
            np.zeros((len(sentences), 0), dtype=np.float32)
        verdicts = tuple(self._verdict(s, row) for s, row in zip(sentences, matrix))
        unsupported = tuple(v.text for v in verdicts if not v.supported)
        return Grounding(1 - len(unsupported) / len(verdicts), unsupported, verdicts)

    def score(self, *, question: str, answer: str, sources: Sequence[str],
              reference: str | None = None, retrieved_ids: Sequence[str] | None = None,
              gold_ids: Sequence[str] | None = None) -> AnswerScores:
        """Every metric for one answer; those needing a reference or gold ids are None
        without them."""
        grounding = self.grounding(answer, sources)
        precision, recall, invalid = self._citations(grounding.sentences, list(sources))
        return AnswerScores(
            groundedness=grounding.groundedness, unsupported=grounding.unsupported,
            citation_precision=precision, citation_recall=recall, invalid_citations=invalid,
            answer_relevance=self.answer_relevance(question, answer),
            context_precision=context_precision(retrieved_ids, gold_ids),
            context_recall=context_recall(retrieved_ids, gold_ids),
            token_f1=token_f1(answer, reference), rouge_l=rouge_l(answer, reference),
            sentences=grounding.sentences)

    def answer_relevance(self, question: str, answer: str) -> float | None:
        """Cosine of question and answer (clipped at 0); None for an empty answer."""
        if not tokens(answer) or not tokens(question):
            return None
        vectors = self.embedder.embed_documents([question, without_citations(answer)])
        return max(float(vectors[0] @ vectors[1]), 0.0)

    def _verdict(self, sentence: str, row: np.ndarray) -> SentenceVerdict:
        best = int(np.argmax(row)) if len(row) else None
        support = float(row[best]) if best is not None else 0.0
        return SentenceVerdict(sentence, support, support >= self.threshold,
                               best + 1 if best is not None else None,
                               tuple(cited_numbers(sentence)))

    def _citations(self, verdicts: Sequence[SentenceVerdict],
                   sources: list[str]) -> tuple[float | None, float | None, tuple[int, ...]]:
        """ALCE citation precision and recall, and the out-of-range numbers cited."""
        if not verdicts:
            return None, None, ()
        precise = total = recalled = 0
        invalid: list[int] = []
        for verdict in verdicts:
            valid = [n for n in verdict.cited if 1 <= n <= len(sources)]
            invalid += [n for n in verdict.cited if n not in valid]
            total += len(verdict.cited)
            if not valid:
                continue
            joint = self._supports(verdict.text, [sources[n - 1] for n in valid])
            recalled += joint
            precise += sum(self._precise(verdict.text, n, valid, joint, sources) for n in valid)
        precision = precise / total if total else None
        return precision, recalled / len(verdicts), tuple(invalid)

    def _precise(self, sentence: str, number: int, cited: list[int], joint: bool,
                 sources: list[str]) -> bool:
        if self._supports(sentence, [sources[number - 1]]):
            return True
        others = [sources[n - 1] for n in cited if n != number]
        return joint and not (others and self._supports(sentence, others))

    def _supports(self, sentence: str, passages: list[str]) -> bool:
        joined = "\n\n".join(passages)
        return bool(self.judge.support([sentence], [joined])[0, 0] >= self.threshold)


# -- metrics against gold documents and reference answers -----------------------------------

def context_precision(retrieved: Sequence[str] | None, gold: Sequence[str] | None) -> float | None:
    """Ragas' rank-weighted precision: the mean of precision@k over the ranks k that hold
    a gold document (0 when none does); None without gold ids or retrieved ids."""
    if not gold or retrieved is None:
        return None
    wanted, hits, total = set(gold), 0, 0.0
    for rank, doc_id in enumerate(retrieved, start=1):
        if doc_id in wanted:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def context_recall(retrieved: Sequence[str] | None, gold: Sequence[str] | None) -> float | None:
    """The share of gold documents among those retrieved; None without gold ids."""
    if not gold or retrieved is None:
        return None
    wanted = set(gold)
    return len(wanted & set(retrieved)) / len(wanted)


def token_f1(answer: str, reference: str | None) -> float | None:
    """SQuAD token F1 (bag of normalised tokens); None without a reference."""
    return _f_measure(answer, reference, _multiset_overlap)


def rouge_l(answer: str, reference: str | None) -> float | None:
    """ROUGE-L F-measure (beta = 1) over normalised tokens; None without a reference."""
    return _f_measure(answer, reference, _lcs)


def _f_measure(answer: str, reference: str | None,
               overlap: Callable[[list[str], list[str]], int]) -> float | None:
    """F1 of ``overlap`` (tokens the answer shares with the reference, counted its way)."""
    if reference is None:
        return None
    predicted, gold = answer_tokens(answer), answer_tokens(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    common = overlap(predicted, gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _multiset_overlap(a: list[str], b: list[str]) -> int:
    counts: dict[str, int] = {}
    for token in b:
        counts[token] = counts.get(token, 0) + 1
    common = 0
    for token in a:
        if counts.get(token, 0) > 0:
            counts[token] -= 1
            common += 1
    return common


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


# -- confidence intervals -------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    mean: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(values: Sequence[float | None], *, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> Interval:
    """Mean and percentile-bootstrap interval of the defined (non-None) values."""
    data = np.array([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return Interval(None, None, None, 0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size))


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], *,
                      level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Mean of ``a - b`` over the items where both are defined, with a bootstrap interval
    that resamples the pairs (so per-question difficulty cancels)."""
    if len(a) != len(b):
        raise ValueError("paired values must have the same length")
    return bootstrap_ci([x - y for x, y in zip(a, b) if x is not None and y is not None],
                        level=level, resamples=resamples, seed=seed)
