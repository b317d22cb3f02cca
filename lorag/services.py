"""The service container: builds each part of lorag once, from the settings tree.

The CLI, the HTTP server, benchmarks and tests all use this one object, so every
entry point runs the same code. Heavy parts (embedder, engine) are built on first use
or by ``warm_up()``.
"""

from __future__ import annotations

import logging
from functools import cached_property

from lorag.config import Settings
from lorag.db import Database
from lorag.jobs import JobStore
from lorag.layout import Layout
from lorag.tenants import TenantStore

log = logging.getLogger(__name__)


class Lorag:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.layout = Layout(self.settings.data_dir)
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Database(self.layout.catalog_db)

    @cached_property
    def tenants(self) -> TenantStore:
        return TenantStore(self.catalog, self.layout)

    @cached_property
    def jobs(self) -> JobStore:
        self.tenants  # the jobs table references tenants
        return JobStore(self.catalog)

    def close(self) -> None:
        """Release everything that was built; safe to call twice."""
        self.catalog.close()
