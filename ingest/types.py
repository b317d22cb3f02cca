"""Values of the ingestion pipeline: inputs, per-document failures, the batch report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
class LoadedDocument:
    """A document after loading and normalisation, ready to hash and chunk."""

    id: str
    text: str
    title: str | None
    metadata: dict
    source: str | None


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
    INVALID_DOCUMENT = "invalid_document"
    DUPLICATE_ID = "duplicate_id"


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
