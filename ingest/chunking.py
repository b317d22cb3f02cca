"""Chunking by the embedder's own tokenizer.

A chunk is never longer than ``limit`` = min(settings max_tokens, the model's max
sequence length minus its special tokens), so the model always sees a whole chunk.
Within that bound a chunk ends at the best boundary in the second half of its window:
a paragraph break, else a sentence end, else a line break, else between words, else
between tokens. Consecutive chunks share about ``overlap`` tokens (starting at a word).

Chunks are slices of the normalised text: chunk i covers text[start:end], the first
starts at 0, the last ends at the end, and each starts at or before the previous
one's end (up to whitespace), so together they cover every character of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ingest.structure import Segment
from retrieval.embedders import Embedder

PARAGRAPH, SENTENCE, LINE, WORD, TOKEN = 4, 3, 2, 1, 0

_SENTENCE_END = re.compile(r"[.!?;:。！？][\"')\]»”’]*$")


@dataclass(frozen=True)
class Chunk:
    position: int
    text: str
    start: int   # character offsets in the normalised document text
    end: int
    tokens: int
    location: dict = field(default_factory=dict)  # where it lies: section, page, slide


class Chunker:
    """Splits normalised text into token-bounded, overlapping chunks."""

    def __init__(self, embedder: Embedder, max_tokens: int, overlap_tokens: int):
        self.embedder = embedder
        self._max_tokens, self._overlap = max_tokens, overlap_tokens

    @property
    def limit(self) -> int:
        return min(self._max_tokens, self.embedder.max_tokens)

    @property
    def overlap(self) -> int:
        return min(self._overlap, self.limit // 4)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the same text would be chunked or embedded differently."""
        return f"{self.embedder.name}|{self.limit}|{self.overlap}"

    def chunk(self, text: str) -> list[Chunk]:
        """Chunks of ``text`` (already normalised); [] for a text without tokens."""
        spans = self.embedder.token_spans(text)
        if not spans:
            return []
        ranges = _plan(text, spans, self.limit, self.overlap)
        chunks = self._materialize(text, spans, ranges)
        counts = self.embedder.count_tokens([c.text for c in chunks])
        if max(counts) > self.limit:  # re-tokenising a slice added tokens: check each cut
            ranges = _plan(text, spans, self.limit, self.overlap, self._fits(text, spans))
            chunks = self._materialize(text, spans, ranges)
            counts = self.embedder.count_tokens([c.text for c in chunks])
        return [Chunk(c.position, c.text, c.start, c.end, n) for c, n in zip(chunks, counts)]

    def chunk_segments(self, text: str, segments: tuple[Segment, ...]) -> list[Chunk]:
        """Chunks of a structured document: each segment chunked on its own (a chunk
        never spans two sections, pages or slides) and tables split by rows."""
        if not segments:
            return self.chunk(text)
        chunks: list[Chunk] = []
        for segment in segments:
            piece = text[segment.start:segment.end]
            found = self._table(piece) if segment.table else self.chunk(piece)
            chunks += [replace(c, position=len(chunks) + i, start=c.start + segment.start,
                               end=c.end + segment.start, location=segment.location)
                       for i, c in enumerate(found)]
        return chunks

    def _table(self, table: str) -> list[Chunk]:
        """A table (one row per line, the header first) in chunks of whole rows, the
        header repeated at the top of each; a row too long for one chunk alone is
        split like text. Chunk spans cover the rows (a repeated header is not in it)."""
        lines = table.split("\n")
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        counts = self.embedder.count_tokens(lines)
        header, header_tokens = lines[0], counts[0]
        if header_tokens * 2 > self.limit:  # no room to repeat it: chunk as text
            return self.chunk(table)
        chunks, first = [], 0
        while first < len(lines):
            stop, used = first + 1, counts[first] + (header_tokens if first else 0)
            while stop < len(lines) and used + counts[stop] + 1 <= self.limit:
                used += counts[stop] + 1
                stop += 1
            chunks += self._rows(table, header if first else None, starts, lines, first, stop,
                                 len(chunks))
            first = stop
        return chunks

    def _rows(self, table: str, header: str | None, starts: list[int], lines: list[str],
              first: int, stop: int, position: int) -> list[Chunk]:
        start = starts[first]
        end = starts[stop - 1] + len(lines[stop - 1])
        text = (header + "\n" if header else "") + table[start:end]
        tokens = self.embedder.count_tokens([text])[0]
        if tokens <= self.limit:
            return [Chunk(position, text, start, end, tokens)]
        if stop - first > 1:  # re-tokenising joined rows added tokens: one row less
            return (self._rows(table, header, starts, lines, first, stop - 1, position) +
                    self._rows(table, header, starts, lines, stop - 1, stop, position + 1))
        return [replace(c, position=position + i, start=c.start + start, end=c.end + start)
                for i, c in enumerate(self.chunk(table[start:end]))]

    def _fits(self, text: str, spans):
        def fits(first: int, stop: int) -> bool:
            end = spans[stop][0] if stop < len(spans) else len(text)
            return self.embedder.count_tokens([text[spans[first][0]:end].rstrip()])[0] <= self.limit
        return fits

    @staticmethod
    def _materialize(text: str, spans, ranges: list[tuple[int, int]]) -> list[Chunk]:
        chunks = []
        for position, (first, stop) in enumerate(ranges):
            start = 0 if first == 0 else spans[first][0]
            end = spans[stop][0] if stop < len(spans) else len(text)
            piece = text[start:end].rstrip()
            chunks.append(Chunk(position, piece, start, start + len(piece), 0))
        return chunks


def _plan(text: str, spans: list[tuple[int, int]], limit: int, overlap: int,
          fits=None) -> list[tuple[int, int]]:
    """Token ranges [first, stop) of the chunks."""
    n = len(spans)
    strength = _boundaries(text, spans)
    ranges, first = [], 0
    while True:
        if n - first <= limit and (fits is None or fits(first, n)):
            ranges.append((first, n))
            return ranges
        stop = _best_cut(strength, first, min(n, first + limit), limit)
        while fits is not None and stop > first + 1 and not fits(first, stop):
            stop -= 1
        ranges.append((first, stop))
        first = _next_start(strength, first, stop, overlap)


def _best_cut(strength: list[int], first: int, hard_stop: int, limit: int) -> int:
    """The stop in the second half of the window with the strongest boundary (latest wins)."""
    low = first + max(1, limit // 2)
    best, best_strength = hard_stop, -1
    for stop in range(hard_stop, low - 1, -1):
        if stop < len(strength) and strength[stop] > best_strength:
            best, best_strength = stop, strength[stop]
            if best_strength == PARAGRAPH:
                break
    return best


def _next_start(strength: list[int], first: int, stop: int, overlap: int) -> int:
    """Start the next chunk ``overlap`` tokens back, moved forward to a word start."""
    if overlap <= 0:
        return stop
    for start in range(max(first + 1, stop - overlap), stop):
        if strength[start] >= WORD:
            return start
    return stop


def _boundaries(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """strength[i]: how good a cut is just before token i (strength[0] is unused)."""
    strength = [TOKEN] * (len(spans) + 1)
    for i in range(1, len(spans)):
        gap = text[spans[i - 1][1]:spans[i][0]]
        if "\n\n" in gap:
            strength[i] = PARAGRAPH
        elif gap and _SENTENCE_END.search(text[max(0, spans[i - 1][1] - 4):spans[i - 1][1]]):
            strength[i] = SENTENCE
        elif "\n" in gap:
            strength[i] = LINE
        elif gap:
            strength[i] = WORD
    return strength
