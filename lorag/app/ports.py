"""What the chat needs of its collaborators, one Protocol each.

``ChatService`` is built on these, not on the concrete stores: the container passes
``BrandStore``, the configured ``AdapterStore`` and ``Retrieval``; tests pass fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from adapters.engines.protocol import AdapterRef
from lorag.core.brands import Brand
from lorag.core.modes import RetrievalMode
from retrieval.filters import Filter
from retrieval.types import SearchHit

FilterValue = str | int | float | bool


class BrandLookup(Protocol):
    """A tenant's brands by name (``lorag.core.brands.BrandStore``)."""

    def get(self, tenant_id: str, name: str) -> Brand:
        """The tenant's brand ``name``; raises NotFound(brand), also for another tenant's."""
        ...


class BrandCatalog(BrandLookup, Protocol):
    """A tenant's brands to read and change (``lorag.core.brands.BrandStore``)."""

    def list(self, tenant_id: str) -> list[Brand]:
        """The tenant's brands, by name."""
        ...

    def update(self, tenant_id: str, name: str, **changes: Any) -> Brand:
        """Change the brand; raises NotFound(brand), InvalidInput naming the field."""
        ...


class AdapterResolver(Protocol):
    """Adapter names to the version an engine serves (``adapters.store.AdapterStore``)."""

    def resolve(self, tenant_id: str, name: str) -> AdapterRef:
        """The newest version of the tenant's adapter ``name``; raises NotFound(adapter),
        Conflict(adapter) when the engine cannot serve all of it."""
        ...


@dataclass(frozen=True)
class Route:
    """Where one request of a brand goes: ``target`` (``adapter@selector`` or ``@base``),
    the version it resolved to (None: the base model), and the rollout ``role`` that
    chose it (``primary`` or ``split``)."""

    target: str
    adapter: AdapterRef | None
    role: str


class TargetRouter(Protocol):
    """A brand's target for one request (``lorag.app.rollouts.RolloutService``)."""

    def route(self, tenant_id: str, brand: Brand, key: str | None,
              messages: Sequence[dict]) -> Route:
        """The target serving this request: sticky per ``key`` (else per the first user
        message) over the brand's split. Raises NotFound(model, code adapter_not_found or
        target_not_found), Conflict(model) when the engine cannot serve the version."""
        ...


class Searcher(Protocol):
    """Search over a tenant's chunks (``retrieval.service.Retrieval``)."""

    def search(self, tenant: str, query: str, *, k: int | None = None,
               mode: RetrievalMode | None = None,
               filters: dict[str, FilterValue] | Filter | None = None) -> list[SearchHit]:
        """The tenant's best ``k`` chunks for ``query``, best first (None = the defaults).

        ``mode`` is a search mode, never OFF. Raises InvalidInput (param ``k``, ``mode``,
        ``filters`` or ``query``), NotFound (param ``tenant``), Conflict (param ``embedder``).
        """
        ...

    def index_state(self, tenant: str) -> dict[str, int] | None:
        """The tenant's chunk store state: ``{"covered": largest chunk id allocated,
        "generation": deleting transactions so far}``; None before its first ingest."""
        ...
