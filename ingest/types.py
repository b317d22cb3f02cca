"""Values of the ingestion pipeline: inputs, per-document failures, the batch report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.structure import Segment


@dataclass
class DocumentInput:
    """A document given as an object. ``id`` is stable: ingesting the same id again
    replaces the document if its content changed and does nothing otherwise."""

    id: str
    text: str
    title: str | None = None
    metadata: dict = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class NamedFile:
    """A file read with the reader of its type but stored under a given document ``id``,
    with ``metadata`` and a ``source`` to cite (not the server path it lies at)."""

    path: Path
    id: str
    source: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedDocument:
    """A document after loading and normalisation, ready to hash and chunk."""

    id: str
    text: str
    title: str | None
    metadata: dict
    source: str | None
    # The text's sections and tables (see ingest/structure.py); empty: plain text.
    segments: tuple["Segment", ...] = ()


@dataclass(frozen=True)
class WebPages:
    """Pages to fetch: one ``url``, or every page a ``sitemap`` lists. Each page's URL
    (after redirects) is its document id and source."""

    url: str | None = None
    sitemap: str | None = None

    def describe(self) -> str:
        return self.sitemap or self.url or "?"


@dataclass(frozen=True)
class Unchanged:
    """A document its source knows to be unchanged (an HTTP 304): nothing to read."""

    id: str
    source: str | None


class LocationKey(str, Enum):
    """Where a chunk lies in its document: the keys of a chunk's metadata."""

    SECTION = "section"   # the headings above it: "Warranty > Returns"
    PAGE = "page"         # 1-based page of a PDF
    SLIDE = "slide"       # 1-based slide of a deck
    SHEET = "sheet"       # the sheet of a spreadsheet


def describe_location(metadata: dict) -> str | None:
    """How a citation names a chunk's place: "Warranty > Returns, page 12", "slide 4"."""
    parts = [str(metadata[LocationKey.SECTION.value])] if metadata.get(LocationKey.SECTION.value) else []
    for key in (LocationKey.SHEET, LocationKey.SLIDE, LocationKey.PAGE):
        if metadata.get(key.value) is not None:
            parts.append(f"{key.value} {metadata[key.value]}")
    return ", ".join(parts) or None


class FailureCode:
    """The ``code`` of a per-document failure."""

    FILE_NOT_FOUND = "file_not_found"
    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_LARGE = "document_too_large"
    BINARY = "binary_content"
    ENCODING = "invalid_encoding"
    EMPTY = "empty_document"
    INVALID_JSONL = "invalid_jsonl"
    INVALID_PDF = "invalid_pdf"
    ENCRYPTED = "encrypted_document"
    ARCHIVE_BOMB = "archive_bomb"
    TOO_MANY_ROWS = "too_many_rows"
    FETCH_FAILED = "fetch_failed"
    ROBOTS_DISALLOWED = "robots_disallowed"
    REDIRECT_LOOP = "redirect_loop"
    INVALID_DOCUMENT = "invalid_document"
    DUPLICATE_ID = "duplicate_id"
    QUOTA_EXCEEDED = "quota_exceeded"


class DocumentError(Exception):
    """One document cannot be ingested; the batch goes on."""

    def __init__(self, code: str, message: str, *, id: str | None = None,
                 source: str | None = None):
        super().__init__(message)
        self.code, self.message, self.id, self.source = code, message, id, source


@dataclass(frozen=True)
class DocumentFailure:
    id: str | None
    source: str | None
    code: str
    message: str

    @property
    def item(self) -> str:
        """How the failure is named in a job record: the id, else the source."""
        return self.id or self.source or "?"


@dataclass
class IngestReport:
    """What one ingestion batch did. ``skipped`` counts files of unsupported types met
    while walking a folder (a file named explicitly is a failure instead)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    chunks_embedded: int = 0
    pii: dict[str, int] = field(default_factory=dict)  # findings by entity type (flag, redact)
    failures: list[DocumentFailure] = field(default_factory=list)
    job_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
