"""What ingestion needs of the tenants' limits (implemented by ``lorag/app/limits``):
a quota per run, the embedding shared fairly over tenants, the usage recorded."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

Embed = Callable[[list[str]], np.ndarray]


class IngestQuota(Protocol):
    def take(self, size: int) -> str | None:
        """Count one document of ``size`` bytes, or return why it is over a quota."""


class IngestLimits(Protocol):
    def quota(self, tenant: str) -> IngestQuota:
        """What one run of ``tenant`` may still take (runs of a tenant never overlap)."""

    def embed(self, tenant: str, texts: list[str], embed: Embed) -> np.ndarray:
        """``embed(texts)``, sharing the embedding with other tenants' runs."""

    def ingested(self, tenant: str, documents: int, size: int) -> None:
        """``documents`` of ``size`` bytes in all were stored (the usage ledger)."""


class _NoQuota:
    def take(self, size: int) -> str | None:
        return None


class Unlimited:
    """No quota; embedding in one call, in arrival order."""

    def quota(self, tenant: str) -> IngestQuota:
        return _NoQuota()

    def embed(self, tenant: str, texts: list[str], embed: Embed) -> np.ndarray:
        return embed(texts)

    def ingested(self, tenant: str, documents: int, size: int) -> None:
        return None
