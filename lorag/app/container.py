"""The service container: builds each part of lorag once, from the settings tree.

The CLI, the HTTP server, benchmarks and tests all use this one object, so every
entry point runs the same code. Heavy parts (embedder, engine) are built on first use
or by ``warm_up()``.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from lorag.app.settings import Settings, use_local_models_only
from lorag.core.audit import AuditLog
from lorag.core.db import Database
from lorag.core.jobs import JobStore
from lorag.core.layout import Layout
from lorag.core.tenants import TenantStore

if TYPE_CHECKING:  # the parts are imported where they are built, so building is lazy
    from adapters.engines.protocol import AdapterRef, InferenceEngine
    from adapters.store import AdapterStore
    from adapters.training import Trainer
    from ingest.pii import PiiRedactor
    from ingest.service import DocumentService, EmbedDocuments
    from lorag.app.chat import ChatService
    from lorag.app.embeddings import EmbeddingService
    from lorag.app.files import FileService
    from lorag.app.fine_tuning import FineTunedBrands, FineTuningService
    from lorag.app.limits import TenantLimits
    from lorag.app.quality.guard import AnswerChecks
    from lorag.app.responses import ResponseService
    from lorag.app.rollouts import RolloutService
    from lorag.app.vector_stores import VectorStoreService
    from lorag.app.rollouts.evaluation_sets import EvaluationSets
    from lorag.core.answers import AnswerStore
    from lorag.core.files import FileStore
    from lorag.core.brands import BrandStore
    from retrieval.embedders import Embedder
    from retrieval.service import Retrieval

log = logging.getLogger(__name__)


class Lorag:
    def __init__(self, settings: Settings | None = None, *,
                 engine: InferenceEngine | None = None,
                 embed_documents: EmbedDocuments | None = None):
        """``engine``: one built elsewhere instead of ``settings.engine.backend``'s (the
        Ray ingress gives a client of its engine deployment); ``embed_documents``: how
        ingestion embeds chunks instead of the embedder in this process (a Ray Data actor
        pool); both from ``lorag/cluster/``."""
        use_local_models_only()
        self.settings = settings or Settings()
        self._embed_documents = embed_documents
        if engine is not None:
            self.__dict__["engine"] = engine  # what the cached property would hold
        self.layout = Layout(self.settings.data_dir)
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)
        self.layout.adapter_imports_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Database(self.layout.catalog_db)

    @cached_property
    def tenants(self) -> TenantStore:
        store = TenantStore(self.catalog, self.layout)
        store.audit = self.audit
        return store

    @cached_property
    def audit(self) -> AuditLog:
        """The hash-chained audit log of brand, alias, split, promotion, rollback and key
        changes."""
        return AuditLog(self.catalog)

    @cached_property
    def jobs(self) -> JobStore:
        self.tenants  # the jobs table references tenants
        return JobStore(self.catalog)

    @cached_property
    def embedder(self) -> Embedder:
        """The configured Embedder (cached per configuration; loads its model on first use)."""
        from retrieval.embedders import get_embedder

        return get_embedder(self.settings.retrieval.embedder)

    @cached_property
    def retrieval(self) -> Retrieval:
        """Per-tenant search; deleting a tenant evicts its cached index."""
        from retrieval.service import Retrieval

        service = Retrieval(self.settings.retrieval, self.layout, lambda: self.embedder,
                            tenant_exists=self.tenants.exists)
        self.tenants.on_delete.append(service.forget)
        return service

    @cached_property
    def documents(self) -> DocumentService:
        """Ingestion (batches and background jobs) and document management."""
        from ingest.service import DocumentService

        return DocumentService(self.settings.ingest, self.retrieval, self.tenants, self.jobs,
                               pii=self.pii_redactor, embed_documents=self._embed_documents,
                               limits=self.limits)

    @cached_property
    def file_store(self) -> FileStore:
        """Uploaded files (OpenAI's Files API), at most ``server.max_body_bytes`` each."""
        from lorag.core.files import FileStore

        self.tenants  # the files table references tenants
        return FileStore(self.catalog, self.layout, max_bytes=self.settings.server.max_body_bytes)

    @cached_property
    def files(self) -> FileService:
        """Uploaded files; deleting one first takes it out of every vector store."""
        from lorag.app.files import FileService

        return FileService(self.file_store, self.vector_stores)

    @cached_property
    def vector_stores(self) -> VectorStoreService:
        """Vector stores: named, filterable collections of files inside a tenant's index."""
        from lorag.app.vector_stores import VectorStoreService
        from lorag.core.vector_stores import VectorStoreCatalog

        self.file_store  # the vector store files table references files
        return VectorStoreService(VectorStoreCatalog(self.catalog), self.file_store,
                                  self.documents, self.retrieval, self.jobs)

    @cached_property
    def limits(self) -> TenantLimits:
        """Per-tenant rate limits, quotas, fair admission of generations and ingestion
        embedding, and the usage ledger."""
        from lorag.app.limits import TenantLimits
        from lorag.core.limits import LimitStore

        self.tenants  # the tables reference tenants
        limits = TenantLimits(self.settings.limits, LimitStore(self.catalog),
                              generation_slots=self.settings.engine.max_num_seqs,
                              tenant_dir=self.layout.tenant_dir)
        self.tenants.on_delete.append(limits.forget)
        return limits

    @cached_property
    def pii_redactor(self) -> PiiRedactor:
        """PII detection for ingestion and answers: one analyzer, built on first use."""
        from ingest.pii import PiiRedactor

        return PiiRedactor(self.settings.ingest.pii)

    @cached_property
    def trainer(self) -> Trainer:
        """LoRA training runs as ``train`` jobs; results are registered as adapter versions."""
        from adapters.models import resolve_base_model
        from adapters.training import Trainer
        from adapters.training.corpus import general_texts

        return Trainer(
            self.settings.adapters.training, self.layout, self.jobs, self.tenants,
            base_model=lambda: resolve_base_model(self.settings.engine.model, self.layout),
            register=lambda tenant, name, folder: self.adapters.register(tenant, name, folder),
            tenant_texts=self.retrieval.document_texts,
            general_texts=general_texts, current_version=self._stable_version)

    def _stable_version(self, tenant: str, name: str) -> int | None:
        """The version ``name``'s stable alias points at (None: no such adapter yet)."""
        from lorag.core.targets import STABLE

        return self.adapters.aliases(tenant, name).get(STABLE)

    @cached_property
    def base_model_path(self) -> str:
        """The served base model: ``settings.engine.model``, or the prepared SmolLM2
        (prepared on first use, ~30 s once)."""
        from adapters.models import resolve_base_model

        return resolve_base_model(self.settings.engine.model, self.layout)

    @cached_property
    def adapters(self) -> AdapterStore:
        """The AdapterStore ``settings.adapters.store`` names: validated, versioned LoRA
        adapters; deletes and new versions unload the engine's copy."""
        from adapters.store import ADAPTER_STORES
        from adapters.validation import BaseModelSpec

        self.tenants  # the adapters table references tenants
        factory = ADAPTER_STORES.get(self.settings.adapters.store, param="adapters.store")
        store = factory(self.catalog, self.layout, self.settings.adapters,
                        max_rank=self.settings.engine.max_lora_rank,
                        served_modules=self.settings.engine.lora_target_modules,
                        base_model=lambda: BaseModelSpec.from_folder(self.base_model_path),
                        audit=self.audit)
        store.on_unload(self._unload_from_engine)
        self.tenants.before_delete.append(store.delete_tenant)
        return store

    @cached_property
    def brands(self) -> BrandStore:
        """Brands of tenants: adapter name, system prompt, retrieval defaults."""
        from lorag.core.brands import BrandStore

        return BrandStore(self.catalog, self.adapters, self.audit)

    @cached_property
    def models(self) -> FineTunedBrands:
        """What chat takes as ``model``: the tenant's brands and its fine-tuned model ids
        (``ft:<base>:<tenant>:<adapter>:<version>``)."""
        from lorag.app.fine_tuning import FineTunedBrands

        return FineTunedBrands(self.brands)

    @cached_property
    def fine_tuning(self) -> FineTuningService:
        """OpenAI's fine-tuning jobs: adapter training on uploaded files."""
        from pathlib import Path

        from lorag.app.fine_tuning import FineTuningService
        from lorag.core.fine_tuning import FineTuningCatalog

        self.tenants  # the table references tenants
        return FineTuningService(FineTuningCatalog(self.catalog), self.file_store, self.trainer,
                                 self.jobs, lambda: Path(self.base_model_path).name)

    @cached_property
    def engine(self) -> InferenceEngine:
        """The InferenceEngine ``settings.engine.backend`` names; ``await warm_up()`` loads it."""
        from adapters.engines import build_engine

        return build_engine(self.settings.engine, model=self.base_model_path,
                            work_dir=self.layout.data_dir / "engine")

    @cached_property
    def chat(self) -> ChatService:
        """Chat as a brand: retrieval -> numbered sources within the token budget -> engine."""
        from lorag.app.chat import ChatService

        return ChatService(brands=self.models, adapters=self.adapters, retrieval=self.retrieval,
                           engine=self.engine, settings=self.settings.chat,
                           checks=self.answer_checks, router=self.rollouts)

    @cached_property
    def embeddings(self) -> EmbeddingService:
        """Embeddings for callers with the tenants' embedding model (``/v1/embeddings``)."""
        from lorag.app.embeddings import EmbeddingService

        return EmbeddingService(lambda: self.embedder, self.brands)

    @cached_property
    def responses(self) -> ResponseService:
        """OpenAI's Responses API: chat with file_search over vector stores, stored
        responses continued by ``previous_response_id``."""
        from lorag.app.responses import ResponseService
        from lorag.core.responses import ResponseStore

        self.tenants  # the responses table references tenants
        return ResponseService(self.chat, self.vector_stores, ResponseStore(self.catalog))

    @cached_property
    def answer_checks(self) -> AnswerChecks:
        """The brands' grounding guard and output PII redaction (lazy: the metrics load
        on the first answer a brand checks)."""
        from lorag.app.quality.guard import AnswerChecks

        return AnswerChecks(lambda: self.embedder, self.pii_redactor)

    @cached_property
    def answers(self) -> AnswerStore:
        """Stored answers, their feedback and the per-target readout."""
        from lorag.core.answers import AnswerStore

        self.tenants  # the tables reference tenants
        return AnswerStore(self.catalog)

    @cached_property
    def rollouts(self) -> RolloutService:
        """Targets, splits, shadow, stored answers, feedback, promotion gates, rollback."""
        from lorag.app.rollouts import RolloutService

        return RolloutService(self.catalog, brands=self.models, adapters=self.adapters,
                              answers=self.answers, audit=self.audit,
                              settings=self.settings.rollouts, scorer=self._answer_scorer())

    @cached_property
    def evaluation_sets(self) -> EvaluationSets:
        """Brands' evaluation sets, the questions of the answer-level promotion gate."""
        from lorag.app.rollouts.evaluation_sets import EvaluationSets

        return EvaluationSets(self.catalog, layout=self.layout, brands=self.brands,
                              audit=self.audit)

    def _answer_scorer(self):
        """The answer gate's scores: the brand's evaluation set answered by each target."""
        from lorag.app.rollouts.scoring import EvaluationScorer

        gates = self.settings.rollouts.gates
        return EvaluationScorer(
            layout=self.layout, chat=lambda: self.chat,
            metrics=lambda: self.answer_checks.metrics,
            resolve=lambda tenant, brand, target: self.rollouts.resolve(tenant, brand, target),
            max_questions=gates.answer_questions, max_tokens=gates.answer_max_tokens)

    @cached_property
    def _engine_unloads(self):
        from adapters.engines import AdapterUnloads

        return AdapterUnloads(self.engine)

    def _unload_from_engine(self, ref: AdapterRef) -> None:
        if "engine" in self.__dict__:  # never build an engine just to unload from it
            self._engine_unloads(ref)

    def close(self) -> None:
        """Release everything that was built; safe to call twice."""
        if "trainer" in self.__dict__:
            self.trainer.shutdown()
        if "retrieval" in self.__dict__:
            self.retrieval.close()
        if "limits" in self.__dict__:
            self.limits.close()
        self.catalog.close()
