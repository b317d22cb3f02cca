"""What the chat needs of its collaborators, one Protocol each.

``ChatService`` is built on these, not on the concrete stores: the container passes
``BrandStore``, the configured ``AdapterStore`` and ``Retrieval``; tests pass fakes.
"""

from __future__ import annotations

from typing import Protocol

from adapters.engines.protocol import AdapterRef
from lorag.core.brands import Brand
from lorag.core.modes import RetrievalMode
from retrieval.types import SearchHit

FilterValue = str | int | float | bool


class BrandLookup(Protocol):
    """A tenant's brands by name (``lorag.core.brands.BrandStore``)."""

    def get(self, tenant_id: str, name: str) -> Brand:
        """The tenant's brand ``name``; raises NotFound(brand), also for another tenant's."""
        ...


class AdapterResolver(Protocol):
    """Adapter names to the version an engine serves (``adapters.store.AdapterStore``)."""

    def resolve(self, tenant_id: str, name: str) -> AdapterRef:
        """The newest version of the tenant's adapter ``name``; raises NotFound(adapter),
        Conflict(adapter) when the engine cannot serve all of it."""
        ...


class Searcher(Protocol):
    """Search over a tenant's chunks (``retrieval.service.Retrieval``)."""

    def search(self, tenant: str, query: str, *, k: int | None = None,
               mode: RetrievalMode | None = None,
               filters: dict[str, FilterValue] | None = None) -> list[SearchHit]:
        """The tenant's best ``k`` chunks for ``query``, best first (None = the defaults).

        ``mode`` is a search mode, never OFF. Raises InvalidInput (param ``k``, ``mode``,
        ``filters`` or ``query``), NotFound (param ``tenant``), Conflict (param ``embedder``).
        """
        ...
