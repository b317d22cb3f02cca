"""Search over a tenant's chunks: dense (FAISS), lexical (FTS5 BM25) and hybrid (RRF).

Every query is scoped to one tenant's own store and index files, and every hit is
joined with its chunk row, so a vector without a row can never surface.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Callable

import numpy as np

from lorag.core.errors import InvalidInput, NotFound
from lorag.core.layout import Layout, check_name
from lorag.core.modes import SEARCH_MODES, RetrievalMode
from retrieval.embedders import Embedder
from retrieval.filters import Comparison, Compound, Filter
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.lexical import fts_query
from retrieval.settings import RetrievalSettings
from retrieval.store import ChunkStore
from retrieval.tenant_index import TenantIndex
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

MAX_K = 1000
MAX_FILTERS = 16
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")

Scored = list[tuple[int, float]]


class Retrieval:
    """Per-tenant search, with an LRU of loaded tenant indexes.

    ``embedder`` is a zero-argument callable returning the Embedder, so building this
    service never loads a model; ``tenant_exists`` lets search refuse unknown tenants.
    """

    def __init__(self, settings: RetrievalSettings, layout: Layout,
                 embedder: Callable[[], Embedder],
                 tenant_exists: Callable[[str], bool] | None = None):
        self.settings = settings
        self.layout = layout
        self._embedder = embedder
        self._tenant_exists = tenant_exists
        self._indexes: OrderedDict[str, TenantIndex] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder()

    # --- tenant indexes ------------------------------------------------------------------

    def tenant_index(self, tenant: str) -> TenantIndex:
        """The tenant's TenantIndex (most recently used); evicts the least recent one
        beyond ``settings.index.cache_tenants``. Raises InvalidInput for a bad name."""
        check_name(tenant, "tenant")
        with self._lock:
            handle = self._indexes.get(tenant)
            if handle is not None:
                self._indexes.move_to_end(tenant)
                return handle
            handle = TenantIndex(tenant, self.layout, self.settings.index, self.embedder)
            self._indexes[tenant] = handle
            evicted = self._evict_over_capacity()
        for old in evicted:
            log.info("tenant=%s index evicted from memory", old.tenant)
            old.release()
        return handle

    def _evict_over_capacity(self) -> list[TenantIndex]:
        evicted = []
        while len(self._indexes) > self.settings.index.cache_tenants:
            evicted.append(self._indexes.popitem(last=False)[1])
        return evicted

    def loaded_tenants(self) -> list[str]:
        with self._lock:
            return list(self._indexes)

    def forget(self, tenant: str) -> None:
        """Drop the tenant's cached index and connections (the tenant is being deleted)."""
        with self._lock:
            handle = self._indexes.pop(tenant, None)
        if handle is not None:
            handle.close()
            log.info("tenant=%s index forgotten", tenant)

    def close(self) -> None:
        """Save changed indexes and close every store; safe to call twice."""
        with self._lock:
            handles = list(self._indexes.values())
            self._indexes.clear()
        for handle in handles:
            handle.save()
            handle.close()

    def document_texts(self, tenant: str) -> list[str]:
        """One text per ingested document of ``tenant``, in document order, rebuilt from
        its chunks ([] when it has ingested nothing). Whole documents are the unit a
        training run splits into train and held-out texts."""
        check_name(tenant, "tenant")
        return ChunkStore(self.layout.tenant_store(tenant)).document_texts()

    def document_text(self, tenant: str, document_id: str) -> str | None:
        """One document's text rebuilt from its chunks (None: no such document)."""
        check_name(tenant, "tenant")
        return self.tenant_index(tenant).store.document_text(document_id)

    def index_state(self, tenant: str) -> dict[str, int] | None:
        """The tenant's chunk store state, which names what its index holds: ``covered``
        (the largest chunk id allocated; every ingest raises it) and ``generation``
        (bumped by every transaction that deletes chunks). None before the tenant's
        first ingest. Raises InvalidInput for a bad name."""
        store = self.tenant_index(tenant).store
        if not store.exists():
            return None
        state = store.state()
        return {"covered": state.covered, "generation": state.generation}

    # --- search --------------------------------------------------------------------------

    def search(self, tenant: str, query: str, *, k: int | None = None,
               mode: RetrievalMode | str | None = None,
               filters: dict[str, str | int | float | bool] | Filter | None = None,
               document_ids: list[str] | None = None) -> list[SearchHit]:
        """The tenant's best ``k`` chunks for ``query``, best first.

        ``mode`` is dense, lexical or hybrid (None = the settings' default); ``filters``
        keeps chunks whose document metadata equals every given value (a dict) or
        passes a Filter tree (see retrieval/filters.py); ``document_ids`` keeps chunks
        of those documents. Raises InvalidInput (param ``k``, ``mode``,
        ``filters``, ``document_ids`` or ``query``), NotFound (param ``tenant``) for an
        unknown tenant, Conflict (param ``embedder``) if the tenant was indexed with
        another embedder. A tenant with no documents gets [].
        """
        k, mode = self._check_k(k), self._check_mode(mode)
        filters, document_ids = check_filters(filters), check_document_ids(document_ids)
        if not isinstance(query, str):
            raise InvalidInput("query must be a string", param="query")
        self._check_tenant(tenant)
        handle = self.tenant_index(tenant)
        if not handle.store.exists() or not query.strip():
            return []
        ranked, dense, lexical = self._rank(handle, query, k, mode, filters, document_ids)
        return [replace(h, dense_score=dense.get(h.chunk_id), lexical_match=h.chunk_id in lexical)
                for h in handle.store.hits(ranked)]

    def _rank(self, handle: TenantIndex, query: str, k: int, mode: RetrievalMode, filters,
              document_ids) -> tuple[Scored, dict[int, float], dict[int, float]]:
        """The mode's best ``k`` (chunk id, score), with the dense and lexical scores
        behind them (empty for a search the mode does not run)."""
        hybrid = mode is RetrievalMode.HYBRID
        n = max(k, self.settings.hybrid_candidates) if hybrid else k
        dense = dict(self._dense(handle, query, n, filters, document_ids)) \
            if mode is not RetrievalMode.LEXICAL else {}
        lexical = dict(self._lexical(handle, query, n, filters, document_ids)) \
            if mode is not RetrievalMode.DENSE else {}
        if hybrid:
            fused = reciprocal_rank_fusion([list(dense), list(lexical)], self.settings.rrf_k)
            return fused[:k], dense, lexical
        return list((dense or lexical).items()), dense, lexical

    def _check_tenant(self, tenant: str) -> None:
        check_name(tenant, "tenant")
        if self._tenant_exists is not None and not self._tenant_exists(tenant):
            raise NotFound(f"tenant {tenant!r} not found", param="tenant")

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return self.settings.default_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be an integer from 1 to {MAX_K}; got {k!r}", param="k")
        return k

    def _check_mode(self, mode: RetrievalMode | str | None) -> RetrievalMode:
        if mode is None:
            return self.settings.default_mode
        if mode not in SEARCH_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(SEARCH_MODES)}; got {mode!r}",
                               param="mode")
        return RetrievalMode(mode)

    def _dense(self, handle: TenantIndex, query: str, k: int, filters, document_ids) -> Scored:
        allowed = None
        if filters or document_ids is not None:
            allowed = handle.store.allowed_chunk_ids(filters, document_ids)
            if not len(allowed):
                return []
        vector = self.embedder.embed_query(query)
        if allowed is not None and len(allowed) <= self.settings.exact_filter_limit:
            return handle.exact(vector, k, allowed)
        return handle.dense(vector, k, allowed)

    def _lexical(self, handle: TenantIndex, query: str, k: int, filters, document_ids) -> Scored:
        match = fts_query(query)
        if match is None:
            return []
        return handle.store.lexical(match, k, filters, document_ids)



def check_filters(filters) -> dict | Filter | None:
    """Validate metadata equality filters (a Filter tree was validated when parsed); raises InvalidInput (param ``filters``)."""
    if filters is None or isinstance(filters, (Comparison, Compound)):
        return filters
    if not isinstance(filters, dict) or len(filters) > MAX_FILTERS:
        raise InvalidInput(f"filters must be an object of at most {MAX_FILTERS} key: value pairs",
                           param="filters")
    for key, value in filters.items():
        if not isinstance(key, str) or not _FILTER_KEY.match(key):
            raise InvalidInput(f"filter key {key!r} must be 1-64 characters of letters, digits, "
                               "'_', '.', ':' or '-'", param="filters")
        if not isinstance(value, (str, int, float, bool)) or (
                isinstance(value, float) and not np.isfinite(value)):
            raise InvalidInput(f"filter {key!r}: value must be a string, number or boolean",
                               param="filters")
    return filters or None


def check_document_ids(document_ids) -> list[str] | None:
    """Validate a document id filter; raises InvalidInput (param ``document_ids``)."""
    if document_ids is None:
        return None
    if not isinstance(document_ids, (list, tuple)) or not all(
            isinstance(i, str) for i in document_ids):
        raise InvalidInput("document_ids must be a list of strings", param="document_ids")
    return list(document_ids)
