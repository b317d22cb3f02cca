"""A document's structure as its readers see it, and the text and segments made of it.

A reader turns a file into ``Parsed``: a title and a list of blocks in reading order.
A block is a piece of text or a table, with its ``location`` (chunk metadata: the
section path of its headings, its page, slide or sheet; see ``LocationKey``).
``assemble`` joins the blocks into the document's normalised text and cuts that text
into ``Segment``s: runs of text blocks with the same location, and each table on its
own, so that chunking can keep to section boundaries and split tables by rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ingest.normalize import normalize_text
from ingest.types import LocationKey


@dataclass(frozen=True)
class TextBlock:
    """A paragraph (or a heading, or a list item) at ``location``."""

    text: str
    location: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TableBlock:
    """A table: its rows of cells, the first row being the header."""

    rows: tuple[tuple[str, ...], ...]
    location: dict = field(default_factory=dict)


Block = TextBlock | TableBlock


@dataclass(frozen=True)
class Parsed:
    """What a reader found in a file."""

    title: str | None
    blocks: list[Block]


@dataclass(frozen=True)
class Segment:
    """``text[start:end]`` of a document: one section's text or one table (one row per
    line, the first line its header), all of it at ``location``."""

    start: int
    end: int
    location: dict
    table: bool = False


class Sections:
    """The section path while reading headings in order: a heading of level n replaces
    the path's n-th part and drops the deeper ones."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []

    def enter(self, level: int, heading: str) -> None:
        heading = " ".join(heading.split())
        if not heading:
            return
        self._path = [(lvl, text) for lvl, text in self._path if lvl < level]
        self._path.append((level, heading))

    def location(self, **extra) -> dict:
        """The location here: the section path, plus ``extra`` (page=, slide=, sheet=)."""
        location = {key: value for key, value in extra.items() if value is not None}
        if self._path:
            location[LocationKey.SECTION.value] = " > ".join(text for _, text in self._path)
        return location


def _table_text(rows: Iterable[tuple[str, ...]]) -> str:
    lines = []
    for row in rows:
        cells = [" ".join(normalize_text(cell).split()).replace("|", "/") for cell in row]
        if any(cells):
            lines.append("| " + " | ".join(cell or "-" for cell in cells) + " |")
    return "\n".join(lines)


def _pieces(blocks: list[Block]) -> list[tuple[str, dict, bool]]:
    """(normalised text, location, is_table) per segment, merging text blocks in a row
    that share a location."""
    pieces: list[tuple[str, dict, bool]] = []
    for block in blocks:
        table = isinstance(block, TableBlock)
        text = _table_text(block.rows) if table else normalize_text(block.text)
        if not text:
            continue
        if pieces and not table and not pieces[-1][2] and pieces[-1][1] == block.location:
            pieces[-1] = (pieces[-1][0] + "\n\n" + text, block.location, False)
        else:
            pieces.append((text, dict(block.location), table))
    return pieces


def assemble(blocks: list[Block]) -> tuple[str, tuple[Segment, ...]]:
    """The normalised text of ``blocks`` and its segments (which cover it, in order)."""
    parts, segments, offset = [], [], 0
    for text, location, table in _pieces(blocks):
        text = normalize_text(text)
        if parts:
            offset += 2  # the "\n\n" joining segments
        parts.append(text)
        segments.append(Segment(offset, offset + len(text), location, table))
        offset += len(text)
    return "\n\n".join(parts), tuple(segments)
