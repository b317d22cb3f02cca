"""Loading inputs into normalised documents.

Inputs are paths (files, or folders walked recursively) and documents given as
objects (``DocumentInput`` or dicts). Each becomes a ``Source`` that yields a
``LoadedDocument`` or a ``DocumentError`` per document, so one bad document (or one
bad line of a .jsonl file) never stops the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from ingest.normalize import looks_garbled, normalize_text
from ingest.readers import READERS, ReadContext, supported_types
from ingest.settings import FormatSettings
from ingest.structure import Parsed, assemble
from ingest.types import (DocumentError, DocumentInput, FailureCode, LoadedDocument, NamedFile,
                          Unchanged, WebPages)

log = logging.getLogger(__name__)

JSONL = ".jsonl"  # many documents per file: read by JsonlSource, not by a reader
SUPPORTED_TYPES = supported_types() | {JSONL}
MAX_ID_CHARS = 512

Input = Union[str, Path, DocumentInput, dict, WebPages, NamedFile]
Loaded = Union[LoadedDocument, DocumentError, Unchanged]


@dataclass(frozen=True)
class Limits:
    """How large a file may be, and what it may unpack into."""

    max_bytes: int
    formats: FormatSettings


class Source(ABC):
    """Something that yields documents; ``count`` is how many it will yield (for progress)."""

    count = 1

    @abstractmethod
    def load(self) -> Iterator[Loaded]:
        """Yield each document, or a DocumentError for one that cannot be read, or
        Unchanged for one the source knows to be as stored."""

    def settled(self, document_ids: list[str]) -> None:
        """Called once these documents are stored (or found unchanged)."""


@dataclass
class ObjectSource(Source):
    obj: object
    max_bytes: int

    def load(self) -> Iterator[Loaded]:
        yield guard(lambda: from_object(self.obj, self.max_bytes), _object_id(self.obj), None)


@dataclass
class FileSource(Source):
    path: Path
    document_id: str
    limits: Limits
    named: NamedFile | None = None  # the id, source and metadata it was given

    def load(self) -> Iterator[Loaded]:
        yield guard(lambda: read_file(self.path, self.document_id, self.limits, self.named),
                     self.document_id, str(self.path))


@dataclass
class JsonlSource(Source):
    """One document per non-blank line: {"id", "text", optional "title", "metadata"}."""

    path: Path
    name: str  # how sources name it: its path below the folder given, or its file name
    max_bytes: int

    def __post_init__(self) -> None:
        with self.path.open("rb") as lines:
            self.count = sum(1 for line in lines if line.strip())

    def load(self) -> Iterator[Loaded]:
        with self.path.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if raw.strip():
                    source = f"{self.name}:{number}"
                    yield guard(lambda: _jsonl_document(raw, source, self.max_bytes), None, source)


@dataclass
class ErrorSource(Source):
    error: DocumentError

    def load(self) -> Iterator[Loaded]:
        yield self.error


def guard(load, document_id: str | None, source: str | None) -> Loaded:
    """Run one load; a DocumentError (or an unexpected error) becomes the result."""
    try:
        return load()
    except DocumentError as exc:
        exc.id = exc.id or document_id
        exc.source = exc.source or source
        return exc
    except Exception as exc:  # a reader bug must not stop the batch either
        log.exception("unexpected error loading id=%s source=%s", document_id, source)
        return DocumentError(FailureCode.INVALID_DOCUMENT, f"could not read: {exc}",
                             id=document_id, source=source)


# --- expanding inputs --------------------------------------------------------------------

def expand_inputs(inputs: list[Input], limits: Limits,
                  web_source: Callable[[WebPages], Source] | None = None
                  ) -> tuple[list[Source], int]:
    """Sources for the inputs, and how many files of unsupported types folders held.
    ``web_source`` makes the source of a WebPages input (without it, one is a failure)."""
    sources: list[Source] = []
    skipped = 0
    for item in inputs:
        if isinstance(item, (str, Path)):
            found, skip = _path_sources(Path(item), limits)
            sources += found
            skipped += skip
        elif isinstance(item, NamedFile):
            sources.append(_named_source(item, limits))
        elif isinstance(item, WebPages):
            sources.append(web_source(item) if web_source else ErrorSource(DocumentError(
                FailureCode.INVALID_DOCUMENT, "web pages cannot be read here",
                source=item.describe())))
        else:
            sources.append(ObjectSource(item, limits.max_bytes))
    return sources, skipped


def _path_sources(path: Path, limits: Limits) -> tuple[list[Source], int]:
    if path.is_dir():
        return _folder_sources(path, limits)
    if not path.is_file():
        return [ErrorSource(DocumentError(FailureCode.FILE_NOT_FOUND, "no such file or folder",
                                          source=str(path)))], 0
    return [_file_source(path, path.name, limits)], 0


def _folder_sources(folder: Path, limits: Limits) -> tuple[list[Source], int]:
    sources, skipped = [], 0
    prefix = folder.resolve().name
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if _file_type(path) not in SUPPORTED_TYPES:
            skipped += 1
            continue
        sources.append(_file_source(path, f"{prefix}/{relative.as_posix()}", limits))
    return sources, skipped


def _file_source(path: Path, document_id: str, limits: Limits) -> Source:
    kind = _file_type(path)
    if kind == JSONL:
        try:
            return JsonlSource(path, document_id, limits.max_bytes)
        except OSError as exc:
            return ErrorSource(DocumentError(FailureCode.INVALID_JSONL, f"unreadable: {exc}",
                                             source=str(path)))
    if kind not in SUPPORTED_TYPES:
        return ErrorSource(DocumentError(
            FailureCode.UNSUPPORTED_TYPE, f"unsupported file type {kind or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_TYPES))}", id=document_id, source=str(path)))
    return FileSource(path, document_id, limits)


def _named_source(named: NamedFile, limits: Limits) -> Source:
    """One document, whatever the type: a .jsonl file is read as text, not as many
    documents (it must stay the one document its id names)."""
    if not named.path.is_file():
        return ErrorSource(DocumentError(FailureCode.FILE_NOT_FOUND, "no such file",
                                         id=named.id, source=named.source))
    if _file_type(named.path) not in SUPPORTED_TYPES - {JSONL}:
        return ErrorSource(DocumentError(
            FailureCode.UNSUPPORTED_TYPE, f"unsupported file type "
            f"{_file_type(named.path) or '(none)'!r}; supported: "
            f"{', '.join(sorted(SUPPORTED_TYPES - {JSONL}))}", id=named.id, source=named.source))
    return FileSource(named.path, named.id, limits, named)


def _file_type(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-2:] == [".rst", ".txt"]:  # Sphinx's _sources/*.rst.txt
        return ".rst"
    return suffixes[-1] if suffixes else ""


# --- reading one file --------------------------------------------------------------------

def read_file(path: Path, document_id: str, limits: Limits,
              named: NamedFile | None = None) -> LoadedDocument:
    """Read one file with the reader of its type; raises DocumentError. A NamedFile
    gives the source and metadata."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise DocumentError(FailureCode.TOO_LARGE,
                            f"{size} bytes is over the limit of {limits.max_bytes}")
    reader = READERS.get(_file_type(path))
    parsed = reader(path.read_bytes(), ReadContext(document_id, limits.formats))
    # The source is the document's own relative name: never a server path (uploads live
    # in a temporary folder, and sources are shown to users in citations).
    if named is not None:
        return parsed_document(document_id, parsed, path.name, named.source, named.metadata)
    return parsed_document(document_id, parsed, path.name, document_id)


def parsed_document(document_id: str, parsed: Parsed, fallback_title: str,
                    source: str | None, metadata: dict | None = None) -> LoadedDocument:
    """A reader's result as a document: its text, and its segments where it has
    structure (sections, pages, tables); raises DocumentError if it has no text."""
    text, segments = assemble(parsed.blocks)
    if not text:
        raise DocumentError(FailureCode.EMPTY, "the document has no text")
    if not any(segment.location or segment.table for segment in segments):
        segments = ()  # plain text: chunked (and hashed) as before structure was kept
    title = normalize_text(parsed.title) if parsed.title else None
    return LoadedDocument(document_id, text, title or fallback_title, metadata or {}, source,
                          segments)


# --- documents given as objects ----------------------------------------------------------

def _object_id(obj) -> str | None:
    value = obj.get("id", obj.get("_id")) if isinstance(obj, dict) else getattr(obj, "id", None)
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def from_object(obj, max_bytes: int, source: str | None = None) -> LoadedDocument:
    """A DocumentInput or dict (id or _id, text, optional title, metadata, source) as a
    normalised document; raises DocumentError."""
    if isinstance(obj, DocumentInput):
        fields = vars(obj)
    elif isinstance(obj, dict):
        fields = {**obj, "id": obj.get("id", obj.get("_id"))}
    else:
        raise DocumentError(FailureCode.INVALID_DOCUMENT,
                            f"expected a path, DocumentInput or dict; got {type(obj).__name__}")
    document_id = _check_id(fields.get("id"))
    try:
        text = fields.get("text")
        if not isinstance(text, str):
            raise DocumentError(FailureCode.INVALID_DOCUMENT, "text must be a string")
        _check_text(text, max_bytes)
        title = _optional_str(fields.get("title"), "title")
        metadata = _check_metadata(fields.get("metadata"))
        source = _optional_str(fields.get("source"), "source") or source
        return _document(document_id, text, title, metadata, source)
    except DocumentError as exc:
        exc.id = document_id
        raise


def _check_id(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS or \
            any(ord(ch) < 32 for ch in value):
        raise DocumentError(FailureCode.INVALID_DOCUMENT,
                            f"id must be a non-empty string of at most {MAX_ID_CHARS} characters "
                            "without control characters")
    return value


def _check_text(text: str, max_bytes: int) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise DocumentError(FailureCode.ENCODING, "text holds invalid characters "
                            "(unpaired surrogates)") from None
    if size > max_bytes:
        raise DocumentError(FailureCode.TOO_LARGE, f"{size} bytes is over the limit of {max_bytes}")
    if looks_garbled(text):
        raise DocumentError(FailureCode.BINARY, "text is mostly control characters (binary data?)")


def _optional_str(value, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise DocumentError(FailureCode.INVALID_DOCUMENT, f"{name} must be a string")


def _check_metadata(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise DocumentError(FailureCode.INVALID_DOCUMENT, "metadata must be an object with string keys")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DocumentError(FailureCode.INVALID_DOCUMENT, f"metadata is not JSON: {exc}") from None


def _jsonl_document(raw: bytes, source: str, max_bytes: int) -> LoadedDocument:
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DocumentError(FailureCode.ENCODING, f"line is not valid UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(FailureCode.INVALID_JSONL, f"line is not JSON: {exc}") from None
    if not isinstance(obj, dict) or "text" not in obj or ("id" not in obj and "_id" not in obj):
        raise DocumentError(FailureCode.INVALID_JSONL,
                            'each line must be an object with "id" and "text"')
    return from_object(obj, max_bytes, source=source)


def _document(document_id: str, text: str, title: str | None, metadata: dict,
              source: str | None) -> LoadedDocument:
    text = normalize_text(text)
    if not text:
        raise DocumentError(FailureCode.EMPTY, "the document has no text")
    title = normalize_text(title) if title else None
    return LoadedDocument(document_id, text, title or None, metadata, source)
