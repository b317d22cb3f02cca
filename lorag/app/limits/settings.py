"""Settings of the per-tenant limits and the fair scheduling (``lorag/app/limits``)."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class SchedulingPolicy(str, Enum):
    """The order in which waiting work (generations, ingestion embedding) is admitted."""

    FAIR = "fair"  # deficit round robin over tenants, by weight
    FIFO = "fifo"  # first come, first served (what the engines do on their own)


class LimitValues(BaseModel):
    """One tenant's limits; None = no limit. The same fields are the defaults (settings)
    and a tenant's overrides (admin API and CLI)."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(
        None, ge=1, description="Chat requests per minute (a token bucket: bursts up to this).")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Chat tokens per minute, prompt + completion; a request "
        "reserves its prompt plus its max_tokens, and what it did not generate is given back.")
    max_concurrent_generations: int | None = Field(
        None, ge=1, description="Chat requests of the tenant generating or waiting at once.")
    documents_per_day: int | None = Field(
        None, ge=1, description="Documents ingested per UTC day.")
    ingest_bytes_per_day: int | None = Field(
        None, ge=1, description="Bytes of document text ingested per UTC day.")
    max_stored_bytes: int | None = Field(
        None, ge=1, description="Size of the tenant's store and index on disk; ingestion "
        "stops taking documents beyond it.")
    weight: float = Field(
        1.0, gt=0, le=1000, description="The tenant's share in the fair scheduling of "
        "generations and ingestion embedding (a tenant of weight 2 gets twice the share).")


class LimitSettings(BaseModel):
    """Defaults of every tenant's limits, and how waiting work is scheduled."""

    defaults: LimitValues = Field(default_factory=LimitValues, description="Every tenant's "
                                  "limits unless overridden (admin API, `lorag limits set`).")
    scheduling: SchedulingPolicy = Field(
        SchedulingPolicy.FAIR, description="fair: waiting generations and ingestion "
        "embedding are admitted in deficit round robin over tenants (by weight); fifo: in "
        "arrival order.")
    generation_slots: int | None = Field(
        None, ge=1, description="Generations admitted to the engine at once, over all "
        "tenants; more wait in lorag's queue in the scheduling order. None: the engine's "
        "max_num_seqs.")
    quantum_tokens: int = Field(
        512, ge=1, description="Deficit round robin quantum: tokens (prompt + max_tokens) "
        "a tenant of weight 1 may be admitted per round while others wait.")
    embedding_slots: int = Field(
        1, ge=1, description="Ingestion embedding calls running at once over all tenants.")
    embedding_slice: int = Field(
        64, ge=1, description="Chunks embedded per call by ingestion; smaller slices let "
        "other tenants' jobs (and questions) in sooner.")
    embedding_share_while_chatting: float = Field(
        0.25, gt=0, le=1, description="While chat requests are in flight, ingestion embeds "
        "at most this share of the time (it pauses between slices), so a large ingestion "
        "job does not take the CPU and the embedder from the questions being answered; "
        "1: no pause.")
    embedding_nice: int = Field(
        19, ge=0, le=19, description="OS priority (nice, Linux) of the threads that embed "
        "ingested documents: at 19 the engine, the event loop and the questions' own "
        "embedding take the cores whenever they need them and ingestion runs on what is "
        "left; 0: the same priority as serving.")
    refresh_seconds: float = Field(
        1.0, ge=0, description="Overrides set by another process (the CLI) are read again "
        "after this; changes through the admin API apply at once.")
