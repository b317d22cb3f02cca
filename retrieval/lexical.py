"""Turning user text into a safe FTS5 query.

User text never reaches FTS5 as syntax: it is split into words, each word becomes a
quoted string (inside which FTS5 only tokenizes), and words are OR-ed, as BM25
expects. Very common English words are dropped (Lucene's English stop set, as the
standard BM25 baselines do) unless nothing else is left.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TERMS = 64

_WORD = re.compile(r"\w+")

STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split())


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for ``text``, or None when it has no searchable word."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    kept = [w for w in words if w not in STOPWORDS] or words
    unique = list(dict.fromkeys(kept))[:MAX_TERMS]
    if not unique:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)
