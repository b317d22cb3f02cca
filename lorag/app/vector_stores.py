"""Vector stores on a tenant's index: attach files (an ingestion job each), the status
OpenAI reports for them, and hybrid search restricted to a store with attribute filters.

Each attached file is one document of the tenant's index, id
``vector_store/<store>/<file>``, whose metadata is the file's attributes plus the
reserved keys ``vector_store_id``, ``file_id`` and ``filename``: a store's search is
the tenant's search with ``vector_store_id`` in the filter, so the same code (and the
same index) serves ``/v1/search``, chat and ``/v1/vector_stores/{id}/search``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Sequence

from ingest.service import DocumentService
from ingest.types import FailureCode, LocationKey, NamedFile
from lorag.core.errors import InvalidInput, NotFound
from lorag.core.files import FilePurpose, FileStore, StoredFile
from lorag.core.jobs import FAILED, QUEUED, RUNNING, JobStore
from lorag.core.modes import RetrievalMode
from lorag.core.pages import PageRequest
from lorag.core.vector_stores import VectorStoreCatalog, VectorStoreFileRow, VectorStoreRow
from retrieval.filters import Comparison, Compound, Filter, Joiner, Operator, parse_filter
from retrieval.service import Retrieval
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

STORE_KEY, FILE_KEY, FILENAME_KEY = "vector_store_id", "file_id", "filename"
RESERVED_KEYS = frozenset({STORE_KEY, FILE_KEY, FILENAME_KEY, *(k.value for k in LocationKey)})
MAX_ATTRIBUTES = 16
MAX_RESULTS = 50
SEARCHABLE = (FilePurpose.ASSISTANTS, FilePurpose.USER_DATA)


class FileStatus(StrEnum):
    """A vector store file's status, as OpenAI names it."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ErrorCode(StrEnum):
    """``last_error.code`` of a failed vector store file, as OpenAI names it."""

    SERVER_ERROR = "server_error"
    UNSUPPORTED_FILE = "unsupported_file"
    INVALID_FILE = "invalid_file"


_UNSUPPORTED = {FailureCode.UNSUPPORTED_TYPE}


@dataclass(frozen=True)
class StoreFile:
    row: VectorStoreFileRow
    status: FileStatus
    last_error: dict | None
    bytes: int


@dataclass(frozen=True)
class StoreView:
    row: VectorStoreRow
    file_counts: dict[str, int]
    usage_bytes: int

    @property
    def status(self) -> str:
        return "in_progress" if self.file_counts[FileStatus.IN_PROGRESS] else "completed"


@dataclass(frozen=True)
class SearchResult:
    file_id: str
    filename: str
    score: float
    attributes: dict
    text: str
    hit: SearchHit = field(repr=False)


def document_id(store_id: str, file_id: str) -> str:
    return f"vector_store/{store_id}/{file_id}"


def store_filter(store_ids: Sequence[str]) -> Filter:
    """Chunks of files attached to any of ``store_ids``."""
    return Comparison(STORE_KEY, Operator.IN, tuple(store_ids))


def user_attributes(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}


class VectorStoreService:
    """A tenant's vector stores, their files and their search."""

    def __init__(self, catalog: VectorStoreCatalog, files: FileStore, documents: DocumentService,
                 retrieval: Retrieval, jobs: JobStore):
        self.catalog = catalog
        self.files = files
        self.documents = documents
        self.retrieval = retrieval
        self.jobs = jobs

    # -- stores -----------------------------------------------------------------------------

    def create(self, tenant: str, name: str | None, metadata: dict,
               file_ids: Sequence[str] = ()) -> StoreView:
        """A new store, with ``file_ids`` attached. Raises NotFound (``file_ids[i]``)."""
        stored = [self._searchable(tenant, f, f"file_ids[{i}]") for i, f in enumerate(file_ids)]
        row = self.catalog.create(tenant, name, metadata)
        for file in stored:
            self._attach(tenant, row.id, file, {})
        return self.view(tenant, row.id)

    def view(self, tenant: str, store_id: str) -> StoreView:
        row = self.catalog.get(tenant, store_id)
        files = [self._file_view(tenant, r) for r in self.catalog.files(tenant, store_id)[0]]
        counts = {status: sum(f.status is status for f in files) for status in FileStatus}
        counts["total"] = len(files)
        usage = sum(f.bytes for f in files if f.status is FileStatus.COMPLETED)
        return StoreView(row, counts, usage)

    def list(self, tenant: str, request: PageRequest) -> tuple[list[StoreView], bool]:
        rows, more = self.catalog.list(tenant, request)
        return [self.view(tenant, r.id) for r in rows], more

    def update(self, tenant: str, store_id: str, name: str | None,
               metadata: dict | None) -> StoreView:
        self.catalog.update(tenant, store_id, name=name, metadata=metadata)
        return self.view(tenant, store_id)

    def delete(self, tenant: str, store_id: str) -> None:
        """Delete the store and its files' documents (the uploaded files stay)."""
        for row in self.catalog.files(tenant, store_id)[0]:
            self._drop_document(tenant, store_id, row.id)
        self.catalog.delete(tenant, store_id)
        log.info("vector store deleted tenant=%s store=%s", tenant, store_id)

    # -- files of a store ---------------------------------------------------------------------

    def attach(self, tenant: str, store_id: str, file_id: str, attributes: dict) -> StoreFile:
        """Attach a file and start reading it into the index (an ingestion job); attaching
        it again answers the file as it is. Raises NotFound (``vector_store_id``,
        ``file_id``), InvalidInput (``attributes``, ``file_id`` of another purpose)."""
        self.catalog.get(tenant, store_id)
        check_attributes(attributes)
        return self._attach(tenant, store_id, self._searchable(tenant, file_id, "file_id"),
                            attributes)

    def _attach(self, tenant: str, store_id: str, file: StoredFile, attributes: dict) -> StoreFile:
        row, new = self.catalog.add_file(tenant, store_id, file.id, attributes)
        if new:
            self._ingest(tenant, store_id, file, attributes)
            self.catalog.touch(tenant, store_id)
        return self.file(tenant, store_id, file.id)

    def _ingest(self, tenant: str, store_id: str, file: StoredFile, attributes: dict) -> None:
        metadata = {**attributes, STORE_KEY: store_id, FILE_KEY: file.id,
                    FILENAME_KEY: file.filename}
        named = NamedFile(file.path, document_id(store_id, file.id), file.filename, metadata)
        job_id = self.documents.start_job(tenant, [named])
        self.catalog.set_file(tenant, store_id, file.id, job_id=job_id)
        log.info("vector store file attached tenant=%s store=%s file=%s job=%s", tenant,
                 store_id, file.id, job_id)

    def update_file(self, tenant: str, store_id: str, file_id: str,
                    attributes: dict) -> StoreFile:
        """New attributes: the file's document is read again with them."""
        check_attributes(attributes)
        self.catalog.file(tenant, store_id, file_id)
        self.catalog.set_file(tenant, store_id, file_id, attributes=attributes)
        self._ingest(tenant, store_id, self.files.get(tenant, file_id), attributes)
        return self.file(tenant, store_id, file_id)

    def file(self, tenant: str, store_id: str, file_id: str) -> StoreFile:
        self.catalog.get(tenant, store_id)
        return self._file_view(tenant, self.catalog.file(tenant, store_id, file_id))

    def store_files(self, tenant: str, store_id: str, request: PageRequest,
                    status: FileStatus | None = None) -> tuple[list[StoreFile], bool]:
        self.catalog.get(tenant, store_id)
        if status is None:
            rows, more = self.catalog.files(tenant, store_id, request)
            return [self._file_view(tenant, r) for r in rows], more
        rows = self.catalog.files(tenant, store_id)[0]  # status is derived: filter in Python
        views = [v for v in (self._file_view(tenant, r) for r in rows) if v.status is status]
        views.sort(key=lambda v: v.row.created_at, reverse=request.order == "desc")
        start = next((i + 1 for i, v in enumerate(views) if v.row.id == request.after), 0)
        return views[start:start + request.limit], len(views) > start + request.limit

    def detach(self, tenant: str, store_id: str, file_id: str) -> None:
        """Remove the file from the store (its document from the index); the file stays."""
        self.catalog.file(tenant, store_id, file_id)
        self._drop_document(tenant, store_id, file_id)
        self.catalog.remove_file(tenant, store_id, file_id)

    def detach_everywhere(self, tenant: str, file_id: str) -> None:
        """Remove a file from every store that holds it (before the file is deleted)."""
        for store_id in self.catalog.stores_of_file(tenant, file_id):
            self.detach(tenant, store_id, file_id)

    def file_text(self, tenant: str, store_id: str, file_id: str) -> str:
        """The text the index holds for the file (empty before it is read)."""
        self.catalog.file(tenant, store_id, file_id)
        return self.retrieval.document_text(tenant, document_id(store_id, file_id)) or ""

    # -- search ---------------------------------------------------------------------------

    def search(self, tenant: str, store_ids: Sequence[str], query: str, *,
               max_results: int = 10, filters: object = None,
               score_threshold: float = 0.0) -> list[SearchResult]:
        """The best chunks of the stores' files for ``query`` (hybrid search), with an
        optional attribute filter (OpenAI's comparison/compound shape). Raises NotFound
        (``vector_store_id``), InvalidInput (``filters...``, ``max_num_results``)."""
        for store_id in store_ids:
            self.catalog.get(tenant, store_id)
        if not 1 <= max_results <= MAX_RESULTS:
            raise InvalidInput(f"max_num_results must be from 1 to {MAX_RESULTS}",
                               param="max_num_results")
        where = self.restriction(store_ids, filters)
        hits = self.retrieval.search(tenant, query, k=max_results, mode=RetrievalMode.HYBRID,
                                     filters=where)
        results = [_result(hit) for hit in hits]
        return [r for r in results if r.score >= score_threshold]

    def restriction(self, store_ids: Sequence[str], filters: object = None,
                    param: str = "filters") -> Filter:
        """The filter a search of ``store_ids`` runs with: the stores, and ``filters``."""
        where: Filter = store_filter(store_ids)
        if filters is not None:
            where = Compound(Joiner.AND, (where, parse_filter(filters, param)))
        return where

    # -- helpers ----------------------------------------------------------------------------

    def _searchable(self, tenant: str, file_id: str, param: str) -> StoredFile:
        file = self.files.get(tenant, file_id, param=param)
        if file.purpose not in SEARCHABLE:
            raise InvalidInput(f"file {file_id!r} has purpose {file.purpose.value!r}; vector "
                               f"stores take files of purpose {' or '.join(SEARCHABLE)}",
                               param=param)
        return file

    def _file_view(self, tenant: str, row: VectorStoreFileRow) -> StoreFile:
        size = self._bytes(tenant, row.id)
        if row.job_id is None:
            return StoreFile(row, FileStatus.IN_PROGRESS, None, size)
        try:
            job = self.jobs.get(tenant, row.job_id)
        except NotFound:
            return StoreFile(row, FileStatus.FAILED, _error(ErrorCode.SERVER_ERROR,
                                                            "the ingestion job is gone"), size)
        if job.status in (QUEUED, RUNNING):
            return StoreFile(row, FileStatus.IN_PROGRESS, None, size)
        if job.status == FAILED:
            return StoreFile(row, FileStatus.FAILED,
                             _error(ErrorCode.SERVER_ERROR, job.error or "ingestion failed"), size)
        if job.failures:
            failure = job.failures[0]
            code = (ErrorCode.UNSUPPORTED_FILE if failure["code"] in _UNSUPPORTED
                    else ErrorCode.INVALID_FILE)
            return StoreFile(row, FileStatus.FAILED, _error(code, failure["message"]), size)
        return StoreFile(row, FileStatus.COMPLETED, None, size)

    def _bytes(self, tenant: str, file_id: str) -> int:
        try:
            return self.files.get(tenant, file_id).bytes
        except NotFound:
            return 0

    def _drop_document(self, tenant: str, store_id: str, file_id: str) -> None:
        try:
            self.documents.delete(tenant, document_id(store_id, file_id))
        except NotFound:
            pass  # never ingested (failed, or still queued)


def check_attributes(attributes: object, param: str = "attributes") -> dict:
    """At most 16 keys, values strings (<= 512), numbers or booleans; the keys lorag sets
    itself are refused. Raises InvalidInput (``attributes``)."""
    if not isinstance(attributes, dict) or len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(f"{param} must be an object of at most {MAX_ATTRIBUTES} keys",
                           param=param)
    for key, value in attributes.items():
        if key in RESERVED_KEYS:
            raise InvalidInput(f"{param}: the key {key!r} is set by lorag", param=f"{param}.{key}")
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            raise InvalidInput(f"{param}: keys are 1-64 characters", param=param)
        if isinstance(value, str) and len(value) > 512 or not isinstance(
                value, (str, int, float, bool)) or isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{param}.{key} must be a string of at most 512 characters, a "
                               "number or a boolean", param=f"{param}.{key}")
    return attributes


def _error(code: ErrorCode, message: str) -> dict:
    return {"code": code.value, "message": message}


def _result(hit: SearchHit) -> SearchResult:
    """A hit as OpenAI reports it: ``score`` is the chunk's cosine similarity with the
    query in [0, 1] (0 for a chunk only the lexical search found); the order is the
    hybrid ranking's."""
    metadata = hit.metadata or {}
    score = min(1.0, max(0.0, hit.dense_score or 0.0))
    return SearchResult(metadata.get(FILE_KEY, ""), metadata.get(FILENAME_KEY, hit.title or ""),
                        score, user_attributes(metadata), hit.text, hit)
