"""OpenAI's fine-tuning job, event and checkpoint shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictFloat, StrictInt

from server.schemas import Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401

Auto = Literal["auto"]


class HyperparametersIn(Request):
    n_epochs: Auto | Annotated[StrictInt, Field(ge=1, le=50)] = Field("auto", description="auto: 3")
    batch_size: Auto | Annotated[StrictInt, Field(ge=1, le=256)] = Field(
        "auto", description="auto: 4 (at most the examples)")
    learning_rate_multiplier: Auto | Annotated[StrictFloat | StrictInt, Field(gt=0, le=10)] = Field(
        "auto", description="Times lorag's base learning rate 1e-3; auto: 1.")


class MethodOptions(Request):
    hyperparameters: HyperparametersIn | None = None


class MethodIn(Request):
    type: Literal["supervised", "domain"] = Field(
        description="`supervised`: chat JSONL (`{\"messages\": [...]}` per line). `domain` "
        "(lorag's extension): next-token training on `{\"text\": ...}` lines.")
    supervised: MethodOptions | None = None
    domain: MethodOptions | None = None


class FineTuningJobCreate(Request):
    """``validation_file`` is refused (unrecognized): lorag holds out 10% of the training
    file for its evaluation."""

    model: str = Field(min_length=1, max_length=200, description="The served base model's id.")
    training_file: str = Field(min_length=1, max_length=100)
    method: MethodIn | None = None
    hyperparameters: HyperparametersIn | None = Field(None, description="Deprecated by OpenAI "
                                                      "in favour of method; either is read.")
    suffix: str | None = Field(None, max_length=63, description="The adapter's name (default ft).")
    seed: StrictInt | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, max_length=16)


class Hyperparameters(BaseModel):
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: dict[str, Any] | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str] = []
    seed: int
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: None = None
    method: dict[str, Any]
    metadata: dict[str, str]
    estimated_finish: None = None
    integrations: None = None


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None = None


class FineTuningEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningEvent]
    has_more: bool


class Checkpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, float]
    step_number: int


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Checkpoint]
    first_id: str | None
    last_id: str | None
    has_more: bool
