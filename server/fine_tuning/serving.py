"""Fine-tuning jobs as OpenAI shapes them: the job, its events, its checkpoint."""

from __future__ import annotations

from lorag.app.fine_tuning import FineTuningRequest, FineTuningView, Hyperparameters, Method
from lorag.core.errors import InvalidInput
from server.fine_tuning import schemas


def to_request(body: schemas.FineTuningJobCreate) -> FineTuningRequest:
    method = Method(body.method.type) if body.method else Method.SUPERVISED
    options = getattr(body.method, method.value, None) if body.method else None
    hyper = (options.hyperparameters if options else None) or body.hyperparameters
    return FineTuningRequest(
        model=body.model, training_file=body.training_file, method=method,
        hyperparameters=Hyperparameters(*(_value(hyper, name) for name in (
            "n_epochs", "batch_size", "learning_rate_multiplier"))),
        suffix=body.suffix, seed=body.seed or 0, metadata=body.metadata)


def _value(hyper: schemas.HyperparametersIn | None, name: str):
    value = getattr(hyper, name) if hyper else "auto"
    return None if value == "auto" else value


def to_job(view: FineTuningView) -> schemas.FineTuningJob:
    row = view.row
    hyper = schemas.Hyperparameters(**row.hyperparameters)
    return schemas.FineTuningJob(
        id=row.id, created_at=int(row.created_at), error=view.error,
        fine_tuned_model=view.fine_tuned_model,
        finished_at=int(view.finished_at) if view.finished_at else None,
        hyperparameters=hyper, model=row.model, organization_id=row.tenant_id, seed=row.seed,
        status=view.status, training_file=row.training_file,
        method={"type": row.method, row.method: {"hyperparameters": hyper.model_dump()}},
        metadata=row.metadata)


def events(view: FineTuningView) -> list[schemas.FineTuningEvent]:
    """The job's events, newest first: created, started, the loss curve (metrics events),
    progress, and how it ended."""
    row, job = view.row, view.job
    found = [("info", "Created fine-tuning job", "message", None, row.created_at)]
    if job.status != "queued":
        found.append(("info", "Fine-tuning job started", "message", None, row.created_at))
    curve = ((view.metrics or {}).get("train") or {}).get("loss_curve") or []
    for step, loss in curve:
        found.append(("info", f"Step {step}: training loss={loss:.4f}", "metrics",
                      {"step": step, "train_loss": loss}, job.updated_at))
    if view.status == "running":
        found.append(("info", f"Step {job.completed}/{job.submitted}", "message", None,
                      job.updated_at))
    ending = {"succeeded": ("info", f"New fine-tuned model created: {view.fine_tuned_model}"),
              "failed": ("error", f"Fine-tuning job failed: {job.error}"),
              "cancelled": ("info", "Fine-tuning job cancelled")}.get(view.status)
    if ending:
        found.append((*ending, "message", None, job.updated_at))
    return [schemas.FineTuningEvent(id=f"ftevent-{row.id[6:]}-{i}", created_at=int(at),
                                    level=level, message=message, type=kind, data=data)
            for i, (level, message, kind, data, at) in reversed(list(enumerate(found)))]


def checkpoints(view: FineTuningView) -> list[schemas.Checkpoint]:
    """The registered version, once the job succeeded (lorag keeps the final one)."""
    if view.fine_tuned_model is None:
        return []
    metrics = view.metrics or {}
    train = metrics.get("train") or {}
    values = {"step": float(train.get("steps") or view.job.submitted)}
    if train.get("final_loss") is not None:
        values["train_loss"] = float(train["final_loss"])
    heldout = metrics.get("heldout") or {}
    if isinstance(heldout.get("adapter_loss"), (int, float)):
        values["valid_loss"] = float(heldout["adapter_loss"])
    return [schemas.Checkpoint(
        id=f"ftckpt-{view.row.id[6:]}", created_at=int(view.finished_at or view.row.created_at),
        fine_tuned_model_checkpoint=view.fine_tuned_model, fine_tuning_job_id=view.row.id,
        metrics=values, step_number=int(values["step"]))]


def page_after(items: list, after: str | None, limit: int) -> tuple[list, bool]:
    """``limit`` items after the one whose id is ``after``; raises InvalidInput (``after``)."""
    start = 0
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise InvalidInput(f"after: no such id {after!r}", param="after")
        start = ids.index(after) + 1
    return items[start:start + limit], len(items) > start + limit
