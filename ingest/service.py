"""The ingestion pipeline and document management (``app.documents``).

load -> normalise -> hash -> (unchanged? skip) -> chunk -> embed (in groups) -> store.

Documents are committed in groups: a group's chunks are embedded in one call (so the
embedder's own length-sorting batches well), then the group's documents are written
in ONE SQLite transaction, then the tenant's in-memory index catches up from the
store. A document counts as ingested once its group has committed; a crash at any
moment loses at most the uncommitted group, never the consistency of store and index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ingest.chunking import Chunker
from ingest.limits import IngestLimits, IngestQuota, Unlimited
from ingest.loaders import Input, Limits, Source, expand_inputs
from ingest.pii import PiiMode, PiiRedactor
from ingest.settings import IngestSettings
from ingest.structure import Segment
from ingest.types import (DocumentError, DocumentFailure, FailureCode, IngestReport,
                          LoadedDocument, Unchanged, WebPages)
from ingest.web import PageCache, WebSource
from lorag.core.errors import InvalidInput, NotFound
from lorag.core.jobs import FAILED, JobStore, Progress
from lorag.core.tenants import TenantStore
from retrieval.service import Retrieval
from retrieval.tenant_index import TenantIndex
from retrieval.types import ChunkWrite, DocumentWrite, StoredDocument

log = logging.getLogger(__name__)

OnCommit = Callable[[list[str]], None]
EmbedDocuments = Callable[[list[str]], np.ndarray]
"""Vectors of chunk texts, row for row (by default the tenant index's embedder; a Ray
Data actor pool for ``lorag ingest --ray``, ``lorag/cluster/ingest.py``)."""


def content_hash(doc: LoadedDocument, fingerprint: str) -> str:
    """Hash of what determines a document's chunks and vectors: normalised text, title,
    metadata, and the chunker/embedder fingerprint."""
    parts = [fingerprint, doc.title, doc.metadata, doc.text]
    if doc.segments:  # where sections, pages and tables lie decides the chunks too
        parts.append([[s.start, s.end, s.location, s.table] for s in doc.segments])
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class _Pending:
    """Documents chunked but not yet embedded and committed."""

    documents: list[tuple[LoadedDocument, str, list]] = field(default_factory=list)
    chunks: int = 0

    def add(self, doc: LoadedDocument, digest: str, chunks: list) -> None:
        self.documents.append((doc, digest, chunks))
        self.chunks += len(chunks)


class _Run:
    """One ingestion batch for one tenant: counts, failures, the progress record."""

    def __init__(self, report: IngestReport, progress: Progress, on_commit: OnCommit | None,
                 pii: "_PiiPolicy", tenant: str = "", quota: IngestQuota | None = None):
        self.report, self.progress, self.on_commit = report, progress, on_commit
        self.pii = pii
        self.tenant, self.quota = tenant, quota
        self.over_quota: str | None = None  # once set, every remaining document fails
        self.seen: set[str] = set()
        self.unchanged: list[str] = []

    def fail(self, error: DocumentError) -> None:
        failure = DocumentFailure(error.id, error.source, error.code, error.message)
        self.report.failed += 1
        self.report.failures.append(failure)
        self.progress.fail(failure.item, failure.code, failure.message)
        log.info("ingest failure id=%s source=%s code=%s: %s", error.id, error.source,
                 error.code, error.message)


@dataclass(frozen=True)
class _PiiPolicy:
    """A tenant's PII handling for one batch."""

    mode: PiiMode
    deny_list: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """Part of the content hash: changing what is redacted re-ingests the documents."""
        if self.mode is not PiiMode.REDACT:
            return ""
        return "pii:" + hashlib.sha256(json.dumps(sorted(self.deny_list)).encode()).hexdigest()[:16]


class DocumentService:
    """Ingests, lists and deletes a tenant's documents."""

    def __init__(self, settings: IngestSettings, retrieval: Retrieval, tenants: TenantStore,
                 jobs: JobStore, pii: PiiRedactor | None = None,
                 embed_documents: EmbedDocuments | None = None,
                 limits: IngestLimits | None = None):
        self.settings = settings
        self.embed_documents = embed_documents
        self.limits = limits or Unlimited()
        self.retrieval = retrieval
        self.tenants = tenants
        self.jobs = jobs
        self._tenant_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self.pii = pii or PiiRedactor(settings.pii)

    @property
    def chunker(self) -> Chunker:
        chunking = self.settings.chunking
        return Chunker(self.retrieval.embedder, chunking.max_tokens, chunking.overlap_tokens)

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        with self._locks_lock:
            return self._tenant_locks.setdefault(tenant, threading.Lock())

    # --- ingestion -----------------------------------------------------------------------

    def ingest(self, tenant: str, inputs: list[Input], *, job_id: str | None = None,
               progress: bool = False, prune: bool = False,
               on_commit: OnCommit | None = None) -> IngestReport:
        """Ingest paths (files, folders) and documents given as objects into the tenant.

        Unchanged documents (same content hash) embed nothing; changed ones are
        replaced; with ``prune``, the tenant's documents absent from ``inputs`` (and not
        failed) are deleted. Per-document problems are recorded in the report (and the
        job, if ``job_id``), never raised. ``on_commit`` is called with the ids of each
        committed group. Raises NotFound (param ``tenant``), InvalidInput (param
        ``inputs``), Conflict (param ``embedder``) if the tenant was indexed with another
        embedder.
        """
        self.tenants.get(tenant)
        if not isinstance(inputs, (list, tuple)):
            raise InvalidInput("inputs must be a list of paths and documents", param="inputs")
        with self._tenant_lock(tenant):
            return self._ingest(tenant, list(inputs), job_id, progress, prune, on_commit)

    def _ingest(self, tenant, inputs, job_id, progress, prune, on_commit) -> IngestReport:
        index = self.retrieval.tenant_index(tenant)
        limits = Limits(self.settings.max_document_bytes, self.settings.formats)
        sources, skipped = expand_inputs(inputs, limits, self._web_source(tenant, index, limits))
        total = sum(source.count for source in sources)
        pii = _PiiPolicy(self.settings.pii.mode_for(tenant), tuple(self.settings.pii.deny_list(tenant)))
        run = _Run(IngestReport(skipped=skipped, job_id=job_id),
                   Progress(self.jobs, job_id, total, description=f"ingest {tenant}", bar=progress),
                   on_commit, pii, tenant, self.limits.quota(tenant))
        log.info("ingest start tenant=%s job=%s documents=%d", tenant, job_id, total)
        try:
            index.check_embedder()
            self._run_sources(index, sources, run)
            if prune:
                self._prune(index, run)
            index.save()
        except BaseException as exc:
            run.progress.finish(_counts(run.report), error=f"{type(exc).__name__}: {exc}")
            raise
        run.progress.finish(_counts(run.report))
        log.info("ingest done tenant=%s job=%s %s", tenant, job_id, _counts(run.report))
        return run.report

    def _web_source(self, tenant: str, index: TenantIndex, limits: Limits):
        """How a WebPages input becomes a source: fetched politely, conditionally when
        the page is stored and its validators known (see ingest/web.py)."""
        def make(pages: WebPages) -> Source:
            cache = PageCache(self.retrieval.layout.tenant_web_pages(tenant))
            return WebSource(pages, self.settings.web, limits, cache, index.store.document_hashes)
        return make

    def _run_sources(self, index: TenantIndex, sources, run: _Run) -> None:
        chunker = self.chunker
        fingerprint = chunker.fingerprint + run.pii.fingerprint
        known = index.store.document_hashes()
        pending = _Pending()
        for source in sources:
            for item in source.load():
                self._take(item, known, fingerprint, chunker, pending, run)
                if pending.chunks >= self.settings.commit_chunks:
                    self._commit(index, pending, known, run, sources)
                    pending = _Pending()
        self._commit(index, pending, known, run, sources)
        for source in sources:
            source.settled(run.unchanged)

    def _take(self, item, known: dict, fingerprint: str, chunker: Chunker, pending: _Pending,
              run: _Run) -> None:
        if isinstance(item, DocumentError):
            run.fail(item)
            return
        if isinstance(item, Unchanged):  # its source checked (an HTTP 304): stored as is
            run.seen.add(item.id)
            run.unchanged.append(item.id)
            run.report.unchanged += 1
            run.progress.advance()
            return
        if item.id in run.seen:
            run.fail(DocumentError(FailureCode.DUPLICATE_ID, "the id appears twice in this batch; "
                                   "the first one was kept", id=item.id, source=item.source))
            return
        run.seen.add(item.id)
        item = self._screen(item, run)
        digest = content_hash(item, fingerprint)
        if known.get(item.id) == digest:
            run.unchanged.append(item.id)
            run.report.unchanged += 1
            run.progress.advance()
            return
        chunks = chunker.chunk_segments(item.text, item.segments)
        if not chunks:
            run.fail(DocumentError(FailureCode.EMPTY, "the document has no tokens", id=item.id,
                                   source=item.source))
            return
        if self._over_quota(item, run):
            return
        pending.add(item, digest, chunks)

    def _over_quota(self, doc: LoadedDocument, run: _Run) -> bool:
        """Fail ``doc`` when it is over one of the tenant's quotas; after the first such
        document, every remaining one fails too (the quota is checked before anything of
        a document is stored, so none is half stored)."""
        if run.over_quota is None and run.quota is not None:
            run.over_quota = run.quota.take(len(doc.text.encode()))
        if run.over_quota is None:
            return False
        run.fail(DocumentError(FailureCode.QUOTA_EXCEEDED, run.over_quota, id=doc.id,
                               source=doc.source))
        return True

    def _screen(self, doc: LoadedDocument, run: _Run) -> LoadedDocument:
        """The document with its PII counted (flag) or replaced (redact) in its text, its
        sections' locations, title and string metadata, before it is hashed, chunked,
        embedded or stored."""
        if run.pii.mode is PiiMode.OFF:
            return doc
        deny = run.pii.deny_list
        counts: dict[str, int] = {}

        def screen(value, *, count: bool = True):
            if not isinstance(value, str):
                return value
            found = self.pii.redact(value, deny_list=deny)
            for entity, n in found.counts.items() if count else ():
                counts[entity] = counts.get(entity, 0) + n
            return found.text

        # A location repeats headings the text holds: redacted, not counted again.
        text, segments = screen_segments(doc.text, doc.segments, screen,
                                         lambda value: screen(value, count=False))
        redacted = replace(doc, text=text, segments=segments, title=screen(doc.title),
                           metadata={k: screen(v) for k, v in doc.metadata.items()})
        for entity, n in counts.items():
            run.report.pii[entity] = run.report.pii.get(entity, 0) + n
        return redacted if run.pii.mode is PiiMode.REDACT else doc

    def _commit(self, index: TenantIndex, pending: _Pending, known: dict, run: _Run,
                sources: list[Source]) -> None:
        if not pending.documents:
            return
        texts = [c.text for _, _, chunks in pending.documents for c in chunks]
        vectors, embedded = self._vectors(index, pending, texts, known, run.tenant)
        writes, offset = [], 0
        for doc, digest, chunks in pending.documents:
            writes.append(_document_write(doc, digest, chunks, vectors[offset:offset + len(chunks)]))
            offset += len(chunks)
        embedder = self.retrieval.embedder
        replaced = index.store.write(writes, embedder=embedder.name, dimension=embedder.dimension)
        index.sync()
        index.save_if_due()
        for write, was_replaced in zip(writes, replaced):
            known[write.id] = write.content_hash
        run.report.updated += sum(replaced)
        run.report.added += len(replaced) - sum(replaced)
        run.report.chunks_embedded += embedded
        self.limits.ingested(run.tenant, len(writes),
                             sum(len(doc.text.encode()) for doc, _, _ in pending.documents))
        run.progress.advance(len(writes))
        for source in sources:
            source.settled([w.id for w in writes])
        if run.on_commit is not None:
            run.on_commit([w.id for w in writes])

    def _vectors(self, index: TenantIndex, pending: _Pending, texts: list[str],
                 known: dict, tenant: str) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` and how many were embedded: a replaced document's chunks
        whose text did not change keep their stored vector, and a text met twice is
        embedded once; the rest go to the model in one call."""
        embedder = self.retrieval.embedder
        replaced = [doc.id for doc, _, _ in pending.documents if doc.id in known]
        by_text = index.store.vectors_by_text(replaced, embedder.dimension) if replaced else {}
        missing = list(dict.fromkeys(t for t in texts if t not in by_text))
        if missing:
            embed = self.embed_documents or embedder.embed_documents
            by_text.update(zip(missing, self.limits.embed(tenant, missing, embed)))
        return np.stack([by_text[t] for t in texts]), len(missing)

    def _prune(self, index: TenantIndex, run: _Run) -> None:
        keep = run.seen | {f.id for f in run.report.failures if f.id}
        stale = [doc_id for doc_id in index.store.document_hashes() if doc_id not in keep]
        if stale:
            run.report.deleted += len(index.store.delete_documents(stale))
            index.sync()

    # --- background jobs -----------------------------------------------------------------

    def start_job(self, tenant: str, inputs: list[Input], *, prune: bool = False) -> str:
        """Start ingesting in a background thread; returns the job id (see ``app.jobs``).

        Raises NotFound (param ``tenant``)."""
        self.tenants.get(tenant)
        job_id = self.jobs.create(tenant, "ingest")
        thread = threading.Thread(target=self._run_job, args=(tenant, list(inputs), job_id, prune),
                                  name=f"ingest-{tenant}-{job_id[:8]}", daemon=True)
        self._threads[job_id] = thread
        thread.start()
        return job_id

    def _run_job(self, tenant: str, inputs: list, job_id: str, prune: bool) -> None:
        try:
            self.ingest(tenant, inputs, job_id=job_id, prune=prune)
        except Exception as exc:  # recorded on the job by ingest(); also for early errors
            log.exception("ingest job=%s tenant=%s failed", job_id, tenant)
            self.jobs.update(job_id, status=FAILED, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._threads.pop(job_id, None)

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Wait for a job started by this process; True when it is no longer running."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # --- documents -----------------------------------------------------------------------

    def list(self, tenant: str, *, limit: int = 100, offset: int = 0) -> list[StoredDocument]:
        """The tenant's documents ordered by id. Raises NotFound (tenant), InvalidInput."""
        self.tenants.get(tenant)
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be from 1 to 10000", param="limit")
        if offset < 0:
            raise InvalidInput("offset must be >= 0", param="offset")
        return self.retrieval.tenant_index(tenant).store.list_documents(limit, offset)

    def count(self, tenant: str) -> int:
        self.tenants.get(tenant)
        return self.retrieval.tenant_index(tenant).store.counts()[0]

    def get(self, tenant: str, document_id: str) -> StoredDocument:
        """One document; raises NotFound (param ``document_id``, or ``tenant``)."""
        self.tenants.get(tenant)
        found = self.retrieval.tenant_index(tenant).store.get_document(document_id)
        if found is None:
            raise NotFound(f"document {document_id!r} not found", param="document_id")
        return found

    def delete(self, tenant: str, document_id: str) -> None:
        """Delete a document with its chunks and vectors; raises NotFound (``document_id``)."""
        self.tenants.get(tenant)
        index = self.retrieval.tenant_index(tenant)
        # No ingest lock: one SQLite transaction suffices, and a delete must not wait
        # for a long ingest job of the same tenant to end.
        if not index.store.exists() or not index.store.delete_documents([document_id]):
            raise NotFound(f"document {document_id!r} not found", param="document_id")
        index.sync()
        index.save_if_due()  # the file is a cache: a later load catches up from the store
        log.info("deleted document tenant=%s id=%s", tenant, document_id)


def _counts(report: IngestReport) -> dict:
    """The report without its failures (a job keeps those in its own failure list)."""
    return {k: v for k, v in report.to_dict().items() if k not in ("failures", "job_id")}


def _document_write(doc: LoadedDocument, digest: str, chunks: list, vectors) -> DocumentWrite:
    return DocumentWrite(
        id=doc.id, title=doc.title, source=doc.source, metadata=doc.metadata,
        content_hash=digest, characters=len(doc.text), vectors=vectors,
        chunks=[ChunkWrite(c.position, c.text, c.start, c.end, c.tokens, c.location)
                for c in chunks])


def screen_segments(text: str, segments: tuple[Segment, ...], screen: Callable[[str], str],
                    screen_location: Callable[[str], str] | None = None,
                    ) -> tuple[str, tuple[Segment, ...]]:
    """``text`` screened piece by piece (each segment, and the text between segments), with
    the segments' spans moved to the screened text and their locations screened too: a
    redaction changes lengths, and a heading can carry PII as well as the body."""
    if not segments:
        return screen(text), ()
    parts: list[str] = []
    moved: list[Segment] = []
    covered = 0
    for segment in segments:
        parts.append(screen(text[covered:segment.start]) if segment.start > covered else "")
        start = sum(len(p) for p in parts)
        parts.append(screen(text[segment.start:segment.end]))
        location = {k: (screen_location or screen)(v) if isinstance(v, str) else v
                    for k, v in segment.location.items()}
        moved.append(replace(segment, start=start, end=start + len(parts[-1]), location=location))
        covered = max(covered, segment.end)
    parts.append(screen(text[covered:]) if covered < len(text) else "")
    return "".join(parts), tuple(moved)
