"""The one settings tree (env prefix ``LORAG_``, nested with ``__``).

Each area defines its own section; this module joins them. Objects receive the part
they need, never the whole tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.settings import AdapterSettings, EngineSettings
from ingest.settings import IngestSettings
from lorag.app.limits.settings import LimitSettings
from retrieval.settings import RetrievalSettings


class ChatSettings(BaseModel):
    """Settings of the chat orchestration (``lorag/app/chat.py``)."""

    default_max_tokens: int = Field(
        256, ge=1, description="Completion tokens reserved when a request gives no max_tokens.")
    default_temperature: float = Field(
        0.2, ge=0.0, le=2.0, description="Sampling temperature when a request gives none.")
    min_dense_score: float = Field(
        0.2, ge=-1.0, le=1.0, description="Retrieved chunks with a lower cosine to the question "
        "that share no content word with it are not relevant and are not shown to the model.")


class GateSettings(BaseModel):
    """Promotion gates a version must pass to become ``stable`` (``lorag/app/rollouts/gates.py``)."""

    max_heldout_ratio: float = Field(
        1.0, gt=0, description="The adapter's held-out perplexity may be at most this times "
        "the base model's (training report `heldout`).")
    max_forgetting_ratio: float = Field(
        1.25, gt=0, description="Adapter / base perplexity on general text at most this "
        "(training report `general.perplexity_ratio`).")
    min_marker_rate: float = Field(
        0.5, ge=0, le=1, description="Share of held-out answers showing the brand's style "
        "marker, when the training run had one (training report `marker.adapter_rate`).")
    max_answer_regression: float = Field(
        0.02, ge=0, description="An answer-level comparison against the current stable "
        "passes when the paired bootstrap interval's lower bound of (candidate - stable) is "
        "above minus this.")
    bootstrap_samples: int = Field(2000, ge=100, le=100_000, description="Bootstrap resamples.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Bootstrap interval coverage.")
    answer_questions: int = Field(
        50, ge=1, le=10_000, description="Questions of the brand's evaluation set "
        "(`<data_dir>/tenants/<tenant>/evaluation/<brand>.jsonl`) the answer gate asks each "
        "of the candidate and the stable.")
    answer_max_tokens: int | None = Field(
        None, ge=1, description="Tokens per evaluation answer; None = the chat default.")


class RolloutSettings(BaseModel):
    """Targets, splits, shadow traffic, stored answers and automatic rollback
    (``lorag/app/rollouts/``)."""

    store_by_default: bool = Field(
        False, description="Keep answers when neither the request (`store`) nor the brand says.")
    retention_days: float | None = Field(
        30.0, gt=0, description="Stored answers older than this are deleted; None keeps them.")
    shadow_max_inflight: int = Field(
        1, ge=0, description="Shadow requests generating at once; more are dropped (counted), "
        "so shadow work never queues behind or ahead of served answers beyond this.")
    shadow_timeout_seconds: float | None = Field(
        30.0, gt=0, description="A shadow request still generating after this is cancelled "
        "(its engine request aborted, its slot freed), counted as an error of its target in "
        "the readout and not stored; None: no limit. Shadow copies start only after the "
        "served answer is complete, so with `shadow_max_inflight` this bounds the engine "
        "time shadow work can take from served answers.")
    auto_rollback: bool = Field(True, description="Roll a split target back when the "
                                "sequential test finds it worse than the brand's own target.")
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="The false-rollback rate the sequential test keeps, "
        "for each brand's split over its whole life (any number of looks).")
    worse_ratio: float = Field(
        2.0, gt=1, description="The alternative the test is tuned for: a target whose "
        "error (or negative-feedback) rate is this many times its control's.")
    gates: GateSettings = GateSettings()


class ServerSettings(BaseModel):
    """Settings of the HTTP server (``server/``)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: SecretStr | None = Field(
        None, description="Key for /admin routes; required outside development.")
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="Largest request body accepted.")


class RaySettings(BaseModel):
    """lorag as an application on a Ray cluster (``lorag/cluster/``; README, "Running on a
    Ray cluster"): the HTTP API as the Serve ingress, the engine as a multiplexed Serve
    deployment, Ray Data embedding for ``lorag ingest --ray``."""

    address: str | None = Field(
        None, description="The cluster to join (`ray://head:10001`, `auto`, or `head:6379`); "
        "None starts a local one-node cluster in the process.")
    app_name: str = Field("lorag", description="The Serve application's name.")
    http_host: str = Field("127.0.0.1", description="Where Serve's HTTP proxy listens "
                           "(0.0.0.0 on a cluster).")
    http_port: int = Field(8000, ge=0, le=65535, description="Serve's HTTP proxy port.")
    data_resource: str | None = Field(
        "lorag_data", description="Custom resource of the node that holds the data directory "
        "(start it with `ray start --resources '{\"lorag_data\": 1}'`): the ingress and the "
        "adapter registry are placed there. None: anywhere (one node, or a shared data "
        "directory).")
    ingress_replicas: int = Field(1, ge=1, description="Replicas of the HTTP ingress. All run "
                                  "on the data node: SQLite has one writer per machine.")
    ingress_num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per ingress replica.")
    ingress_max_ongoing_requests: int = Field(
        256, ge=1, description="Requests one ingress replica takes at once (Serve's default, "
        "5, would cap the whole application at 5 requests in flight per ingress replica; "
        "the ingress mostly waits on engine replicas).")
    engine_replicas: int = Field(
        1, ge=1, description="Engine replicas when autoscaling is off (engine_max_replicas None).")
    engine_min_replicas: int = Field(1, ge=0, description="Autoscaling: fewest engine replicas.")
    engine_max_replicas: int | None = Field(
        None, ge=1, description="Autoscaling: most engine replicas; None = a fixed "
        "engine_replicas.")
    engine_target_ongoing_requests: float = Field(
        16.0, gt=0, description="Autoscaling aims at this many requests in flight per engine "
        "replica (Ray Serve's target_ongoing_requests).")
    engine_max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one engine replica takes at once; more wait in Serve's "
        "queue (or go to another replica).")
    engine_num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per engine replica.")
    engine_num_gpus: float = Field(0.0, ge=0, description="GPUs per engine replica (1 on a "
                                   "GPU node; 0 for the CPU build of vLLM).")
    max_adapters_per_replica: int = Field(
        8, ge=1, description="Adapter versions one engine replica keeps loaded "
        "(@serve.multiplexed's max_num_models_per_replica; least recently used leaves first). "
        "Serve sends a version's requests to replicas that hold it.")
    adapter_cache_dir: Path | None = Field(
        None, description="Where engine replicas keep the adapter files they fetched and "
        "verified (each node's local disk); None = <temp dir>/lorag-ray/adapters.")
    ingest_jobs: bool = Field(
        False, description="The ingress' ingestion jobs (POST /v1/documents) embed with Ray "
        "Data as `lorag ingest --ray` does; False: in the ingress process.")
    ingest_embed_actors: int = Field(
        1, ge=1, description="`lorag ingest --ray`: embedding actors of the Ray Data actor "
        "pool (each loads the embedder once).")
    ingest_embed_num_cpus: float = Field(1.0, gt=0, description="CPUs per embedding actor.")
    ingest_batch_size: int = Field(256, ge=1, description="Chunks per map_batches call.")
    ingest_commit_chunks: int = Field(
        4096, ge=1, description="Chunks embedded by one Ray Data run and committed in one "
        "transaction (ingest.commit_chunks for local ingestion): larger amortises the actor "
        "pool's start; a crash loses at most this uncommitted group.")

    @model_validator(mode="after")
    def _bounds(self) -> "RaySettings":
        high = self.engine_max_replicas
        if high is not None and high < self.engine_min_replicas:
            raise ValueError("ray.engine_max_replicas must be at least engine_min_replicas")
        return self


def use_local_models_only() -> None:
    """No model hub is reachable: every model comes from a local folder. Called where a
    process starts lorag (the container), never at import."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LORAG_", env_nested_delimiter="__",
                                      extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "data", description="Where lorag "
                           "keeps all its state (default: ./data under the working directory).")
    environment: str = Field("development", description="development, test or production.")
    retrieval: RetrievalSettings = RetrievalSettings()
    ingest: IngestSettings = IngestSettings()
    engine: EngineSettings = EngineSettings()
    adapters: AdapterSettings = AdapterSettings()
    server: ServerSettings = ServerSettings()
    chat: ChatSettings = ChatSettings()
    rollouts: RolloutSettings = RolloutSettings()
    ray: RaySettings = RaySettings()
    limits: LimitSettings = LimitSettings()

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> "Settings":
        if self.environment == "production":
            key = self.server.admin_key.get_secret_value() if self.server.admin_key else ""
            if len(key) < 32:
                raise ValueError("LORAG_SERVER__ADMIN_KEY must be set (32+ characters) in production")
        return self
