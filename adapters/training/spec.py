"""What to train (``TrainSpec``, validated at the edge) and what came out (``TrainResult``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lorag.core.errors import InvalidInput
from lorag.core.layout import check_name

DEFAULT_TARGETS = ("q_proj", "v_proj")


class TrainingKind(StrEnum):
    """What a training run learns from."""

    SFT = "sft"  # assistant turns of chat conversations (loss on the answers only)
    DOMAIN = "domain"  # next-token prediction on plain texts (the tenant's documents)


class TrainSpec(BaseModel):
    """One LoRA training run. ``kind="sft"`` learns assistant turns of chat conversations;
    ``kind="domain"`` continues next-token training on plain texts (by default the
    tenant's ingested chunks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Adapter name the result is registered under.")
    kind: TrainingKind = TrainingKind.SFT
    sft_file: Path | None = Field(None, description="Chat JSONL ({\"messages\": [...]} per line).")
    conversations: list[list[dict]] | None = Field(
        None, description="SFT conversations given inline instead of a file.")
    texts: list[str] | None = Field(
        None, description="Domain texts given inline; None = the tenant's ingested chunks.")
    steps: int = Field(100, ge=1, le=100_000, description="Optimizer steps.")
    batch_size: int = Field(4, ge=1, le=256)
    rank: int = Field(8, ge=1, le=256, description="LoRA rank r.")
    alpha: int | None = Field(None, ge=1, description="LoRA alpha; None = 2 * rank.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    targets: tuple[str, ...] = Field(DEFAULT_TARGETS, min_length=1,
                                     description="Module names LoRA wraps (q_proj, v_proj, o_proj...).")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak learning rate (AdamW).")
    warmup_steps: int | None = Field(None, ge=0, description="None = 10% of steps, at most 20.")
    max_length: int = Field(512, ge=16, le=32_768, description="SFT: tokens kept per conversation.")
    block_size: int = Field(256, ge=16, le=32_768, description="Domain: tokens per training block.")
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0,
                                    description="Share of conversations/texts held out for evaluation.")
    seed: int = 0
    base: str | None = Field(None, description="Base model folder; None = the engine's model.")
    checkpoint_every: int = Field(50, ge=0, description="Steps between checkpoints; 0 = none.")
    resume: bool = Field(False, description="Continue from the latest checkpoint of this name.")
    marker: str | None = Field(None, description="SFT: a regex the answers should match; "
                               "the held-out match rate of base vs adapter goes in the metrics.")
    marker_max_new_tokens: int = Field(96, ge=1, le=2048)
    general_text: Path | None = Field(
        None, description="Text for the forgetting check; None = the shipped general text.")
    progress: bool = Field(True, description="Show a terminal progress bar.")
    register_result: bool = Field(True, description="Register the result as a new adapter version.")
    out: Path | None = Field(None, description="Also copy the final adapter folder here.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "name")

    @field_validator("marker")
    @classmethod
    def _marker(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _data_matches_kind(self) -> "TrainSpec":
        one_sft_input = (self.sft_file is None) != (self.conversations is None)
        if self.kind is TrainingKind.SFT and not one_sft_input:
            raise ValueError("sft training needs exactly one of sft_file or conversations")
        if self.kind is TrainingKind.DOMAIN and (self.sft_file or self.conversations):
            raise ValueError("domain training takes texts (or the tenant's chunks), not SFT data")
        return self

    @property
    def lora_alpha(self) -> int:
        return self.alpha or 2 * self.rank

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(20, self.steps // 10)

    def fingerprint(self) -> dict:
        """The fields a resumed run must share with the run that wrote the checkpoint."""
        return self.model_dump(mode="json", include={
            "kind", "sft_file", "steps", "batch_size", "rank", "alpha", "dropout", "targets",
            "lr", "warmup_steps", "max_length", "block_size", "holdout_fraction", "seed", "base"})

    @classmethod
    def parse(cls, **values: Any) -> "TrainSpec":
        """Build a spec; raises InvalidInput naming the first bad field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = ".".join(str(p) for p in error["loc"]) or None
            raise InvalidInput(f"{param or 'spec'}: {error['msg']}", param=param) from None


@dataclass
class TrainResult:
    """A finished run: the adapter folder it wrote (``folder``, holding ``metrics.json``),
    the registered version when it was registered, and the metrics."""

    tenant: str
    name: str
    folder: Path
    metrics: dict
    version: Any = None
    job_id: str | None = None

    def summary(self) -> dict:
        version = self.version
        return {"tenant": self.tenant, "name": self.name, "folder": str(self.folder),
                "version": getattr(version, "version", version),
                "adapter_id": getattr(version, "id", None), "job_id": self.job_id,
                "heldout": self.metrics.get("heldout"), "general": self.metrics.get("general"),
                "marker": _without_samples(self.metrics.get("marker"))}


def _without_samples(marker: dict | None) -> dict | None:
    if marker is None:
        return None
    return {k: v for k, v in marker.items() if not k.endswith("_samples")}
