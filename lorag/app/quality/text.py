"""Text pieces the answer metrics share: sentences, citation markers, tokens."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s*\[\d+\])*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*\d])")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ARTICLES = {"a", "an", "the"}
NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "nobody", "neither", "nor",
                       "cannot", "without", "n't", "isn't", "aren't", "wasn't", "weren't",
                       "don't", "doesn't", "didn't", "won't", "can't", "couldn't",
                       "shouldn't", "wouldn't", "hasn't", "haven't", "hadn't", "mustn't"})
STOPWORDS = frozenset("""a an the and or but if then so of to in on at by for with from as is are
was were be been being it its this that these those there here he she they them his her their
we you your our i me my do does did has have had will would can could should may might must
shall which who whom what when where why how than also just only very about into over under
up down out off again further once any each few more most other some such own same too s t
""".split())


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: split after . ! ? (keeping the citation markers that
    follow the stop with their sentence), at blank lines and before list items."""
    text = text.strip()
    if not text:
        return []
    cuts = [0]
    for match in _SENTENCE_END.finditer(text):
        marker_end = match.start() + len(match.group(0).rstrip())
        cuts.append(marker_end if match.group(0).strip() else match.end())
    cuts.append(len(text))
    parts = (text[a:b].strip() for a, b in zip(cuts, cuts[1:]))
    return [p for p in parts if tokens(p)]


def cited_numbers(sentence: str) -> list[int]:
    """The ``[n]`` numbers a sentence cites, in order, without repeats."""
    return list(dict.fromkeys(int(n) for n in CITATION.findall(sentence)))


def without_citations(sentence: str) -> str:
    return CITATION.sub("", sentence).strip()


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (citation markers removed)."""
    return _TOKEN.findall(without_citations(text).lower().replace("\u2019", "'"))


def content_tokens(text: str) -> list[str]:
    """Tokens that carry meaning: stopwords dropped, negations and numbers kept."""
    return [t for t in tokens(text) if t not in STOPWORDS or t in NEGATIONS]


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation for token F1 and ROUGE-L: lower case, punctuation and
    articles removed."""
    return [t for t in tokens(text) if t not in _ARTICLES]


NUMBER_WORDS = frozenset("""zero one two three four five six seven eight nine ten eleven twelve
thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty
seventy eighty ninety hundred thousand million half twice once first second third""".split())


def is_number(token: str) -> bool:
    return token in NUMBER_WORDS or any(ch.isdigit() for ch in token)


def has_negation(token_list: list[str]) -> bool:
    return any(t in NEGATIONS or t.endswith("n't") for t in token_list)


def proper_nouns(sentence: str) -> set[str]:
    """Tokens of the capitalised words that do not start the sentence (names, products)."""
    words = re.findall(r"[A-Za-z][\w-]*", without_citations(sentence))
    return {t for i, w in enumerate(words) if i > 0 and w[0].isupper() for t in tokens(w)}
