"""OpenAI's fine-tuning jobs on lorag's adapter training.

A job trains a LoRA adapter of the tenant on the served base model (a ``train`` job of
``adapters.training.Trainer``) and registers the result as a new adapter version; its
``fine_tuned_model`` is ``ft:<base>:<tenant>:<adapter>:<version>``, which chat, the
Responses API and completions accept as ``model`` (the tenant's own only) and which
serves exactly that version, with the tenant's retrieval defaults.

Methods: ``supervised`` (OpenAI's: chat JSONL, loss on the assistant turns) and lorag's
own ``domain`` (an extension: next-token training on plain texts, one ``{"text": ...}``
per line of the training file, to teach a tenant's vocabulary and facts).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Callable

from adapters.training import Trainer
from adapters.training.data import jsonl_records, load_chat_jsonl
from adapters.training.loop import METRICS_FILE
from adapters.training.spec import TrainingKind, TrainSpec
from lorag.core.brands import Brand, BrandStore
from lorag.core.errors import InvalidInput, NotFound
from lorag.core.files import FilePurpose, FileStore, StoredFile
from lorag.core.fine_tuning import FineTuningCatalog, FineTuningRow
from lorag.core.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobStore
from lorag.core.layout import check_name
from lorag.core.pages import PageRequest

log = logging.getLogger(__name__)

FT_PREFIX = "ft:"
_MODEL_ID = re.compile(r"^ft:(?P<base>[^:]+):(?P<tenant>[^:]+):(?P<adapter>[^:]+):(?P<version>\d+)$")
DEFAULT_EPOCHS = 3
DEFAULT_BATCH = 4
BASE_LR = 1e-3  # learning_rate_multiplier 1.0
MAX_STEPS = 10_000


class Method(StrEnum):
    SUPERVISED = "supervised"  # OpenAI's: chat conversations
    DOMAIN = "domain"  # lorag's extension: plain texts


_KINDS = {Method.SUPERVISED: TrainingKind.SFT, Method.DOMAIN: TrainingKind.DOMAIN}
# A lorag job's status -> OpenAI's fine-tuning job status.
STATUSES = {QUEUED: "queued", RUNNING: "running", SUCCEEDED: "succeeded", FAILED: "failed",
            CANCELLED: "cancelled"}


@dataclass(frozen=True)
class Hyperparameters:
    """None = "auto": 3 epochs, batch 4 (at most the examples), multiplier 1 (lr 1e-3)."""

    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None


@dataclass(frozen=True)
class FineTuningRequest:
    model: str
    training_file: str
    method: Method = Method.SUPERVISED
    hyperparameters: Hyperparameters = Hyperparameters()
    suffix: str | None = None
    seed: int = 0
    metadata: dict | None = None


@dataclass(frozen=True)
class FineTuningView:
    row: FineTuningRow
    job: Job
    status: str
    fine_tuned_model: str | None
    error: dict | None
    finished_at: float | None
    metrics: dict | None  # the run's metrics.json once it succeeded


def model_id(base: str, tenant: str, adapter: str, version: int) -> str:
    return f"{FT_PREFIX}{base}:{tenant}:{adapter}:{version}"


class FineTuningService:
    def __init__(self, catalog: FineTuningCatalog, files: FileStore, trainer: Trainer,
                 jobs: JobStore, base_model_id: Callable[[], str]):
        self.catalog = catalog
        self.files = files
        self.trainer = trainer
        self.jobs = jobs
        self._base_model_id = base_model_id

    @property
    def base_model_id(self) -> str:
        """The id fine-tuning takes as ``model``: the served base model's folder name."""
        return self._base_model_id()

    def create(self, tenant: str, request: FineTuningRequest) -> FineTuningView:
        """Validate the file and start training. Raises InvalidInput (``model``,
        ``training_file``, ``suffix``, ``hyperparameters...``), NotFound (``training_file``)."""
        if request.model != self.base_model_id:
            raise InvalidInput(f"model must be the served base model {self.base_model_id!r}; "
                               f"got {request.model!r}", param="model")
        file = self.files.get(tenant, request.training_file, param="training_file")
        if file.purpose is not FilePurpose.FINE_TUNE:
            raise InvalidInput(f"training_file {file.id!r} has purpose {file.purpose.value!r}, "
                               "not 'fine-tune'", param="training_file")
        adapter = check_name(request.suffix or "ft", "suffix")
        spec, hyper = self._spec(file, adapter, request)
        job_id = self.trainer.start(tenant, spec)
        row = self.catalog.create(tenant, job_id=job_id, model=request.model,
                                  training_file=file.id, adapter=adapter,
                                  method=request.method.value, hyperparameters=hyper,
                                  seed=request.seed, metadata=request.metadata or {})
        log.info("fine-tuning job tenant=%s job=%s adapter=%s steps=%d", tenant, row.id,
                 adapter, spec.steps)
        return self.view(tenant, row.id)

    def _spec(self, file: StoredFile, adapter: str,
              request: FineTuningRequest) -> tuple[TrainSpec, dict]:
        kind = _KINDS[request.method]
        if kind is TrainingKind.SFT:
            examples = load_chat_jsonl(file.path, param="training_file")
            data: dict = {"sft_file": file.path}
        else:
            texts = _texts(file.path)
            examples, data = texts, {"texts": texts}
        hyper = request.hyperparameters
        epochs = hyper.n_epochs or DEFAULT_EPOCHS
        batch = hyper.batch_size or min(DEFAULT_BATCH, len(examples))
        multiplier = hyper.learning_rate_multiplier or 1.0
        steps = min(MAX_STEPS, max(1, math.ceil(len(examples) * epochs / batch)))
        spec = TrainSpec.parse(name=adapter, kind=kind, steps=steps, batch_size=batch,
                               lr=BASE_LR * multiplier, seed=request.seed, progress=False,
                               checkpoint_every=0, **data)
        return spec, {"n_epochs": epochs, "batch_size": batch,
                      "learning_rate_multiplier": multiplier}

    def view(self, tenant: str, row_id: str) -> FineTuningView:
        row = self.catalog.get(tenant, row_id)
        job = self.jobs.get(tenant, row.job_id)
        status = STATUSES.get(job.status, job.status)
        model, metrics, error = None, None, None
        if job.status == SUCCEEDED and job.result and job.result.get("version"):
            model = model_id(row.model, tenant, row.adapter, int(job.result["version"]))
            metrics = _metrics(job.result.get("folder"))
        if job.status == FAILED:
            error = {"code": "training_failed", "message": job.error or "training failed",
                     "param": None}
        ended = job.status in (SUCCEEDED, FAILED, CANCELLED)
        return FineTuningView(row, job, status, model, error,
                              job.updated_at if ended else None, metrics)

    def list(self, tenant: str, request: PageRequest) -> tuple[list[FineTuningView], bool]:
        rows, more = self.catalog.list(tenant, request)
        return [self.view(tenant, r.id) for r in rows], more

    def cancel(self, tenant: str, row_id: str) -> FineTuningView:
        """Stop a queued or running job; raises InvalidInput (``fine_tuning_job_id``)
        when it has already ended."""
        view = self.view(tenant, row_id)
        if view.job.status not in (QUEUED, RUNNING) or not self.trainer.cancel(view.job.id):
            raise InvalidInput(f"fine-tuning job {row_id!r} is {view.status}: only a queued or "
                               "running job can be cancelled", param="fine_tuning_job_id")
        return self.view(tenant, row_id)


class FineTunedBrands:
    """The tenant's brands, and its fine-tuned model ids as brands that serve exactly
    their version (the BrandLookup chat and rollouts use)."""

    def __init__(self, brands: BrandStore):
        self._brands = brands

    def get(self, tenant_id: str, name: str) -> Brand:
        """The brand, or the fine-tuned model ``name``; raises NotFound (brand), also for
        another tenant's fine-tuned model."""
        parsed = _MODEL_ID.match(name) if name.startswith(FT_PREFIX) else None
        if parsed is None:
            return self._brands.get(tenant_id, name)
        if parsed.group("tenant") != tenant_id:
            raise NotFound(f"brand {name!r} not found", param="brand")
        adapter, version = parsed.group("adapter"), int(parsed.group("version"))
        return Brand(tenant_id, name, adapter_name=adapter, target=f"{adapter}@v{version}",
                     store=False)

    def list(self, tenant_id: str) -> list[Brand]:
        """The tenant's brands (fine-tuned model ids are not brands one lists)."""
        return self._brands.list(tenant_id)

    def update(self, tenant_id: str, name: str, **changes) -> Brand:
        """``BrandStore.update``: a fine-tuned model id is no brand to change (NotFound)."""
        return self._brands.update(tenant_id, name, **changes)


def _texts(path: Path) -> list[str]:
    """The ``{"text": ...}`` lines of a domain training file; raises InvalidInput."""
    texts = []
    for where, record in jsonl_records(path, "training_file"):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInput(f"{where}: expected {{\"text\": \"...\"}}",
                               param="training_file")
        texts.append(record["text"])
    if not texts:
        raise InvalidInput("the training file holds no text", param="training_file")
    return texts


def _metrics(folder: str | None) -> dict | None:
    if not folder:
        return None
    path = Path(folder) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
