"""A tenant's chunk store and its in-memory vector index, kept in step.

The store commits first; the in-memory index only ever changes by catching up from
the store (``sync``), so a crash at any moment leaves nothing the store does not
know. The index file is written atomically and records the (covered chunk id,
deletion generation) it reflects; loading it and catching up gives the same index
as a rebuild, without re-reading every vector.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import faiss
import numpy as np

from lorag.core.errors import Conflict
from lorag.core.layout import Layout
from retrieval.embedders import Embedder
from retrieval.settings import IndexSettings
from retrieval.store import ChunkStore, VectorChanges
from retrieval.vector_index import (CorruptIndexFile, IndexHeader, VectorIndex, create_index,
                                    read_index_file, remove_stale_temp_files, write_index_file)

log = logging.getLogger(__name__)


@contextmanager
def search_threads(count: int) -> Iterator[None]:
    """FAISS OpenMP threads for one search, in this thread only.

    OpenMP's thread count is per calling thread and torch shares the same runtime, so
    setting it process-wide would also slow the embedder (e.g. an ingest) to ``count``.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class TenantIndex:
    """One tenant's ChunkStore plus its vector index; thread-safe."""

    def __init__(self, tenant: str, layout: Layout, settings: IndexSettings, embedder: Embedder):
        self.tenant = tenant
        self.settings = settings
        self.embedder = embedder
        self.store = ChunkStore(layout.tenant_store(tenant))
        self.path = layout.tenant_index(tenant)
        self._index: VectorIndex | None = None
        self._store_identity: int | None = None
        self._covered = 0
        self._generation = 0
        self._dirty = False
        self._last_save = time.monotonic()
        self._lock = threading.RLock()

    # --- keeping the index in step with the store ----------------------------------------

    def check_embedder(self) -> None:
        """Raise Conflict if the tenant's vectors come from another embedder."""
        stored = self.store.embedder()
        current = (self.embedder.name, self.embedder.dimension)
        if stored and stored != current and self.store.counts()[1] > 0:
            raise Conflict(
                f"tenant {self.tenant!r} was indexed with embedder {stored[0]} (dimension "
                f"{stored[1]}), not {current[0]}: delete its documents and ingest them again",
                param="embedder")

    def sync(self) -> VectorIndex | None:
        """The in-memory index, loaded and caught up with the store; None if the tenant
        has no store yet. Raises Conflict for an embedder mismatch."""
        with self._lock:
            if not self.store.exists():
                self._index = None
                return None
            if self._index is not None and self._store_identity != self.store.identity:
                self._index = None  # the tenant was deleted and created again meanwhile
            if self._index is None:
                self.check_embedder()
                self._load()
                self._store_identity = self.store.identity
            self._catch_up()
            return self._index

    def _load(self) -> None:
        remove_stale_temp_files(self.path)
        try:
            header, index = read_index_file(self.path, self.settings)
        except FileNotFoundError:
            self._rebuild("no index file")
            return
        except CorruptIndexFile as exc:
            log.warning("tenant=%s damaged index file, rebuilding: %s", self.tenant, exc)
            self._rebuild("damaged index file")
            return
        if (header.embedder, header.dimension) != (self.embedder.name, self.embedder.dimension):
            self._rebuild("index file from another embedder")
            return
        self._index, self._covered, self._generation = index, header.covered, header.generation
        log.info("tenant=%s loaded %s index: %d vectors, covered=%d generation=%d", self.tenant,
                 index.kind, len(index), header.covered, header.generation)

    def _catch_up(self) -> None:
        state = self.store.state()
        if (state.covered, state.generation) == (self._covered, self._generation):
            self._switch_kind_if_needed()
            return
        changes = self.store.changes_since(self._covered, self._generation,
                                           self.embedder.dimension)
        if not changes.complete:
            self._rebuild("deletion log pruned past this index")
            return
        self._index.add(changes.ids, changes.vectors)
        self._index.remove(changes.removed)
        self._covered, self._generation = changes.state.covered, changes.state.generation
        self._dirty = True
        if self._index.needs_rebuild():
            self._rebuild("too many removed vectors")
        else:
            self._switch_kind_if_needed()

    def _rebuild(self, reason: str, kind: str | None = None) -> None:
        changes: VectorChanges = self.store.all_vectors(self.embedder.dimension)
        kind = kind or self._wanted_kind(len(changes.ids))
        started = time.monotonic()
        index = create_index(kind, self.embedder.dimension, self.settings)
        index.add(changes.ids, changes.vectors)
        self._index = index
        self._covered, self._generation = changes.state.covered, changes.state.generation
        self._dirty = True
        log.info("tenant=%s rebuilt %s index (%s): %d vectors in %.2fs", self.tenant, kind, reason,
                 len(index), time.monotonic() - started)

    def _wanted_kind(self, size: int, current: str | None = None) -> str:
        if self.settings.kind != "auto":
            return self.settings.kind
        threshold = self.settings.ann_threshold
        if current == "hnsw":  # hysteresis: do not flap around the threshold
            return "hnsw" if size >= threshold // 2 else "flat"
        return "hnsw" if size >= threshold else "flat"

    def _switch_kind_if_needed(self) -> None:
        wanted = self._wanted_kind(len(self._index), self._index.kind)
        if wanted != self._index.kind:
            self._rebuild(f"{len(self._index)} vectors: switching to {wanted}", wanted)

    # --- persistence ---------------------------------------------------------------------

    def save(self, *, force: bool = False) -> bool:
        """Write the index file if it changed since the last save; True if written."""
        with self._lock:
            if self._index is None or not (self._dirty or force):
                return False
            header = IndexHeader(self._index.kind, self.embedder.dimension, self.embedder.name,
                                 self._covered, self._generation)
            payload = self._index.to_bytes()
            self._dirty = False
            self._last_save = time.monotonic()
        write_index_file(self.path, header, payload)
        self._prune_deletion_log(header.generation)
        return True

    def save_if_due(self) -> bool:
        """Save when the last save is older than ``settings.save_seconds``."""
        if time.monotonic() - self._last_save < self.settings.save_seconds:
            return False
        return self.save()

    def _prune_deletion_log(self, saved_generation: int) -> None:
        if self.store.deletion_log_size() > self.settings.deletion_log_max:
            self.store.prune_deletion_log(saved_generation)

    def release(self) -> None:
        """Save if needed and drop the in-memory vectors (LRU eviction); reloads on next use."""
        self.save()
        with self._lock:
            self._index = None

    def close(self) -> None:
        """Drop everything without saving (the tenant is being deleted)."""
        with self._lock:
            self._index = None
            self.store.close()

    # --- search --------------------------------------------------------------------------

    def dense(self, query: np.ndarray, k: int,
              allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Best ``k`` (chunk id, cosine) by the vector index, optionally within ``allowed``."""
        with self._lock:
            index = self.sync()
            if index is None:
                return []
            with search_threads(self.settings.search_threads):
                ids, scores = index.search(query, k, allowed)
        return list(zip(ids.tolist(), scores.tolist()))

    def exact(self, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        """Best ``k`` (chunk id, cosine) among ``allowed``, scored from the stored vectors."""
        ids, vectors = self.store.vectors(allowed, self.embedder.dimension)
        if not len(ids):
            return []
        scores = vectors @ np.asarray(query, dtype=np.float32)
        order = np.lexsort((ids, -scores))[:k]
        return list(zip(ids[order].tolist(), scores[order].tolist()))

    def vector_ids(self) -> np.ndarray:
        """Ids in the (synced) vector index; for consistency checks."""
        with self._lock:
            index = self.sync()
            return index.ids() if index is not None else np.zeros(0, dtype=np.int64)

    @property
    def kind(self) -> str | None:
        return self._index.kind if self._index is not None else None
