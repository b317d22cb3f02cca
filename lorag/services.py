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

    @cached_property
    def trainer(self):
        """LoRA training runs as ``train`` jobs; results are registered as adapter versions."""
        from adapters.models import resolve_base_model
        from adapters.training import Trainer
        from adapters.training.corpus import general_texts, tenant_document_texts

        return Trainer(
            self.settings.adapters.training, self.layout, self.jobs, self.tenants,
            base_model=lambda: resolve_base_model(self.settings.engine.model, self.layout),
            register=lambda tenant, name, folder: self.adapters.register(tenant, name, folder),
            tenant_texts=lambda tenant: tenant_document_texts(self.layout, tenant),
            general_texts=general_texts)

    def close(self) -> None:
        """Release everything that was built; safe to call twice."""
        if "trainer" in self.__dict__:
            self.trainer.shutdown()
        self.catalog.close()
