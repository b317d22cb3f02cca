"""The training service: runs a ``TrainSpec`` for a tenant as a job, then registers the
adapter it made.

``train`` runs synchronously (the CLI); ``start`` queues the same work on one
background thread and returns the job id at once (the HTTP API). Runs execute one at
a time: on a CPU host two trainings would only halve each other's speed.
"""

from __future__ import annotations

import gc
import logging
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from adapters.settings import TrainingSettings
from adapters.training.loop import run_training, write_metrics
from adapters.training.spec import TrainingKind, TrainResult, TrainSpec
from lorag.core.errors import LoragError
from lorag.core.jobs import CANCELLED, JobStore, Progress
from lorag.core.layout import Layout
from lorag.core.tenants import TenantStore

log = logging.getLogger(__name__)

JOB_KIND = "train"

RegisterFn = Callable[[str, str, Path], Any]


class TrainingCancelled(Exception):
    """Raised inside a run at the first step after ``Trainer.cancel``."""


class Trainer:
    """Trains LoRA adapters for tenants.

    ``base_model()`` names the base folder (called per run, so a model prepared later is
    picked up); ``register(tenant, name, folder)`` stores the result as a new adapter
    version and returns it; ``tenant_texts(tenant)`` gives the texts domain training
    reads when the spec brings none; ``general_texts()`` the forgetting-check text;
    ``current_version(tenant, name)`` the version the name's ``stable`` alias points at
    (None: none yet), recorded as the run's ``parent_version``: LoRA weights start from
    the base model, so the parent is the version the run was made to succeed, the one
    its gates compare it with.
    """

    def __init__(self, settings: TrainingSettings, layout: Layout, jobs: JobStore,
                 tenants: TenantStore, *, base_model: Callable[[], str],
                 register: RegisterFn | None, tenant_texts: Callable[[str], Sequence[str]],
                 general_texts: Callable[[Path | None], Sequence[str]],
                 current_version: Callable[[str, str], int | None] | None = None):
        self.settings = settings
        self.layout = layout
        self.jobs = jobs
        self.tenants = tenants
        self._base_model = base_model
        self._register = register
        self._tenant_texts = tenant_texts
        self._general_texts = general_texts
        self._current_version = current_version
        self._executor: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._cancelled: set[str] = set()

    def workdir(self, tenant: str, name: str) -> Path:
        """Where a run keeps its checkpoints and final folder until it is registered."""
        return self.layout.data_dir / "training" / tenant / name

    def start(self, tenant: str, spec: TrainSpec) -> str:
        """Queue a run; returns its job id (kind ``train``). Raises NotFound for an unknown
        tenant; every later failure is recorded on the job."""
        self.tenants.get(tenant)
        job_id = self.jobs.create(tenant, JOB_KIND, submitted=spec.steps)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorag-train")
        self._futures[job_id] = self._executor.submit(self._run_quietly, tenant, spec, job_id)
        return job_id

    def wait(self, job_id: str, timeout: float | None = None) -> TrainResult | None:
        """Block until a started job ends; its result, or None when it failed."""
        return self._futures[job_id].result(timeout)

    def cancel(self, job_id: str) -> bool:
        """Stop a job started by this process: a queued one never starts, a running one
        stops at its next step (nothing is registered). The job's status becomes
        ``cancelled``. False when it has already ended (or is not this process's)."""
        future = self._futures.get(job_id)
        if future is None or future.done():
            return False
        self._cancelled.add(job_id)
        if future.cancel():
            self.jobs.update(job_id, status=CANCELLED, error="cancelled before it started")
        log.info("training cancel requested job=%s", job_id)
        return True

    def train(self, tenant: str, spec: TrainSpec) -> TrainResult:
        """Run now, in this thread. Raises NotFound (tenant), InvalidInput (data, spec),
        and whatever registration raises; the job record says the same."""
        self.tenants.get(tenant)
        job_id = self.jobs.create(tenant, JOB_KIND, submitted=spec.steps)
        return self._run(tenant, spec, job_id)

    def shutdown(self) -> None:
        """Wait for the running job and drop queued ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _run_quietly(self, tenant: str, spec: TrainSpec, job_id: str) -> TrainResult | None:
        try:
            return self._run(tenant, spec, job_id)
        except Exception:  # already recorded on the job by _run
            return None

    def _run(self, tenant: str, spec: TrainSpec, job_id: str) -> TrainResult:
        import torch

        torch.set_num_threads(self.settings.threads)
        progress = Progress(self.jobs, job_id, spec.steps)
        bar = _bar(spec.steps, f"train {tenant}/{spec.name}", spec.progress)
        log.info("training tenant=%s adapter=%s kind=%s steps=%d job=%s",
                 tenant, spec.name, spec.kind, spec.steps, job_id)
        try:
            result = self._train_and_register(tenant, spec, job_id, progress, bar)
        except TrainingCancelled:
            log.info("training cancelled tenant=%s adapter=%s job=%s", tenant, spec.name, job_id)
            self.jobs.update(job_id, status=CANCELLED, error="cancelled while training")
            raise
        except Exception as exc:
            message = exc.message if isinstance(exc, LoragError) else f"{type(exc).__name__}: {exc}"
            log.exception("training failed tenant=%s adapter=%s job=%s", tenant, spec.name, job_id)
            progress.finish(error=message)
            raise
        finally:
            bar.close()
            gc.collect()
        progress.finish(result=result.summary())
        log.info("trained tenant=%s adapter=%s version=%s job=%s", tenant, spec.name,
                 getattr(result.version, "version", None), job_id)
        return result

    def _train_and_register(self, tenant, spec, job_id, progress: Progress, bar) -> TrainResult:
        texts = None
        if spec.kind is TrainingKind.DOMAIN:
            texts = spec.texts if spec.texts is not None else list(self._tenant_texts(tenant))

        def on_step(done: int, loss: float) -> None:
            """``done`` counts steps from 0, so a resumed run jumps to where it was."""
            if job_id in self._cancelled:
                raise TrainingCancelled(job_id)
            progress.advance(done - progress.completed)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(done - bar.n)

        parent = self._current_version(tenant, spec.name) if self._current_version else None
        base = spec.base or self._base_model()
        workdir = self.workdir(tenant, spec.name)
        if not spec.resume:
            shutil.rmtree(workdir, ignore_errors=True)
        folder, metrics = run_training(spec, base, workdir, texts=texts, on_step=on_step,
                                       general_texts=self._general_texts(spec.general_text))
        metrics.update(tenant=tenant, job_id=job_id, parent_version=parent)
        write_metrics(folder, metrics)
        if spec.out is not None:
            shutil.rmtree(spec.out, ignore_errors=True)
            shutil.copytree(folder, spec.out)
        version = None
        if spec.register_result and self._register is not None:
            version = self._register(tenant, spec.name, folder)
            shutil.rmtree(workdir, ignore_errors=True)
        return TrainResult(tenant, spec.name, folder if version is None else _version_path(version, folder),
                           metrics, version, job_id)


def _version_path(version: Any, fallback: Path) -> Path:
    return Path(getattr(version, "path", fallback))


def _bar(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="step", dynamic_ncols=True, disable=not enabled)
