"""Admin bodies: tenants and their keys, brands, adapters, training."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from adapters.training.spec import TrainingKind
from lorag.core.brands import DEFAULT_FALLBACK, GroundingMode
from lorag.core.modes import RetrievalMode
from server.schemas import MAX_TOP_K, FilterValue, Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.jobs.schemas import Job, JobList  # noqa: F401
from server.schemas import Deleted, error_responses  # noqa: F401


class TenantCreate(Request):
    id: str = Field(description="Lowercase letters, digits, '-' and '_' (1-63 characters).")
    display_name: str | None = Field(None, max_length=200)


class Tenant(BaseModel):
    id: str
    object: Literal["tenant"] = "tenant"
    display_name: str
    created_at: float


class TenantList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Tenant]


class IssuedKey(BaseModel):
    """A new API key: ``api_key`` is shown here once; only its hash is stored."""

    id: int
    object: Literal["api_key"] = "api_key"
    tenant: str
    api_key: str
    hint: str


class TenantCreated(BaseModel):
    tenant: Tenant
    key: IssuedKey


class ApiKey(BaseModel):
    id: int
    object: Literal["api_key"] = "api_key"
    hint: str
    created_at: float


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKey]


class BrandRetrieval(Request):
    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K)
    mode: RetrievalMode | None = None
    filters: dict[str, FilterValue] | None = None


class BrandQuality(Request):
    """The brand's answer checks (lorag/app/quality/guard.py)."""

    grounding: GroundingMode = Field(GroundingMode.OFF, description="off; flag: add the "
                                     "groundedness and unsupported sentences to responses; "
                                     "abstain: also replace an ungrounded non-streamed answer "
                                     "with `fallback`.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="The least share of supported "
                             "sentences of a grounded answer.")
    fallback: str = Field(DEFAULT_FALLBACK, min_length=1, max_length=2_000)
    redact_output: bool = Field(False, description="Replace PII in answers with typed "
                                "placeholders such as <EMAIL_ADDRESS>.")


RESPONSE_FORMAT = ("The brand's default output format, in OpenAI's shape: `{\"type\": "
                   "\"json_object\"}` or `{\"type\": \"json_schema\", \"json_schema\": "
                   "{\"name\", \"schema\", \"strict\"}}`; null: plain text. A chat request's "
                   "own `response_format` wins (`{\"type\": \"text\"}` turns it off).")


class BrandCreate(Request):
    name: str = Field(description="The `model` clients send; lowercase, digits, '-', '_'.")
    adapter: str | None = Field(None, description="The target: an adapter name (= "
                                "`name@stable`), `name@alias`, `name@vN` or `name@latest`; "
                                "None = the base model.")
    store: StrictBool | None = Field(None, description="Keep answers by default.")
    system_prompt: str = Field("", max_length=20_000)
    retrieval: BrandRetrieval = Field(default_factory=BrandRetrieval)
    quality: BrandQuality | None = None
    response_format: dict[str, Any] | None = Field(None, description=RESPONSE_FORMAT)


class BrandUpdate(Request):
    """Only the fields given change; ``adapter: null`` switches to the base model."""

    adapter: str | None = None
    system_prompt: str | None = Field(None, max_length=20_000)
    retrieval: BrandRetrieval | None = None
    quality: BrandQuality | None = Field(None, description="Replaces the brand's checks whole.")
    store: StrictBool | None = None
    response_format: dict[str, Any] | None = Field(None, description=RESPONSE_FORMAT)


class Brand(BaseModel):
    name: str
    object: Literal["brand"] = "brand"
    tenant: str
    adapter: str | None
    target: str = Field(description="What the brand serves: `adapter@alias`, `adapter@vN`, "
                        "`adapter@latest` or `@base`.")
    split: list[dict[str, Any]] = Field(description="Other targets and their percentages.")
    shadow: dict[str, Any] | None
    store: bool | None
    system_prompt: str
    retrieval: dict[str, Any]
    created_at: float
    updated_at: float
    quality: dict[str, Any]
    response_format: dict[str, Any] | None = None


class BrandList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Brand]


class AdapterRegister(Request):
    name: str
    path: str = Field(description="The absolute path of a PEFT LoRA folder or archive on the "
                                  "server, under one of the folders `adapters.import_roots` "
                                  "lists (by default `<data_dir>/import/adapters`); it is "
                                  "copied. Empty or relative: 400; elsewhere, also through "
                                  "`..` or a link: 403 `path_not_allowed`.")


class AdapterVersion(BaseModel):
    id: int
    object: Literal["adapter"] = "adapter"
    tenant: str
    name: str
    version: int
    rank: int
    alpha: float
    targets: list[str]
    base_model: str
    status: str
    created_at: float
    lineage: dict[str, Any] = Field(default_factory=dict, description="Where the version "
                                    "comes from: base model, weights' sha256, its training "
                                    "report, the promotion decisions taken on it.")


class AdapterList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdapterVersion]


class AdapterDeleted(BaseModel):
    object: Literal["list"] = "list"
    deleted: list[AdapterVersion]


class TrainingCreate(Request):
    """A LoRA training run (see ``adapters.training.TrainSpec`` for every bound)."""

    name: str = Field(description="Adapter name the result is registered under.")
    kind: TrainingKind = TrainingKind.SFT
    conversations: list[list[dict[str, Any]]] | None = Field(
        None, description="sft: chat conversations, each a list of {role, content}.")
    texts: list[str] | None = Field(None, description="domain: texts; None = the tenant's chunks.")
    steps: StrictInt | None = None
    batch_size: StrictInt | None = None
    rank: StrictInt | None = None
    alpha: StrictInt | None = None
    targets: list[str] | None = None
    lr: StrictFloat | None = None
    max_length: StrictInt | None = None
    block_size: StrictInt | None = None
    seed: StrictInt | None = None
    marker: str | None = None


# -- rollouts: aliases, promotion, splits, shadow, rollback, readout, audit ------------------

class SplitArm(Request):
    target: str = Field(description="`adapter@alias`, `adapter@vN`, `adapter@latest` or `@base`.",
                        max_length=200)
    percent: StrictFloat | StrictInt = Field(gt=0, lt=100)


class SplitUpdate(Request):
    split: list[SplitArm] = Field(max_length=8, description="Each target's share of the "
                                  "brand's traffic; the brand's own target serves the rest. "
                                  "[] ends the split.")


class ShadowTarget(Request):
    target: str = Field(max_length=200)
    rate: StrictFloat | StrictInt = Field(gt=0, le=1, description="Share of requests copied.")


class ShadowUpdate(Request):
    shadow: ShadowTarget | None = Field(description="null stops shadowing.")


class Rollback(Request):
    target: str | None = Field(None, max_length=200, description="The split target to take "
                               "out; null: all of them.")


class Promotion(Request):
    version: StrictInt = Field(ge=1, le=2**62)
    force: StrictBool = Field(False, description="Promote to stable even when gates fail "
                              "(recorded in the audit log and the version's lineage).")


class Aliases(BaseModel):
    object: Literal["adapter.aliases"] = "adapter.aliases"
    adapter: str
    aliases: dict[str, int]


class PromotionResult(BaseModel):
    object: Literal["adapter.promotion"] = "adapter.promotion"
    alias: str
    version: int
    previous: int | None
    forced: bool
    gates: list[dict[str, Any]]


class Gates(BaseModel):
    object: Literal["adapter.gates"] = "adapter.gates"
    version: int
    gates: list[dict[str, Any]]


class AuditRecord(BaseModel):
    seq: int
    tenant: str | None
    actor: str
    action: str
    subject: str
    before: Any
    after: Any
    at: float
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditRecord]


class AuditVerification(BaseModel):
    ok: bool
    records: int
    bad_seq: int | None
    reason: str | None
    head: str | None = Field(description="The last record's hash; kept elsewhere, it shows "
                             "whether records were removed from the end.")


class EvaluationSet(BaseModel):
    """A brand's evaluation set (the answer-level promotion gate's questions)."""

    object: Literal["evaluation.set"] = "evaluation.set"
    brand: str
    questions: int
    sha256: str = Field(description="Of the stored JSON Lines file.")
    updated_at: float
    items: list[dict[str, Any]] = Field(description="The questions, one object a line: "
                                        "`question`, optional `reference`, `gold_ids`, `id`.")


class RolloutReadout(BaseModel):
    object: Literal["rollout.readout"] = "rollout.readout"
    brand: str
    target: str
    split: list[dict[str, Any]]
    shadow: dict[str, Any] | None
    targets: list[dict[str, Any]] = Field(description=(
        "Per target, version and role: requests, errors, error_rate, mean_latency_seconds, "
        "prompt_tokens, completion_tokens, feedback_up, feedback_down, groundedness (the "
        "mean grounding-guard score; null when none was scored) and groundedness_count."))
    tests: list[dict[str, Any]]
    rollbacks: list[dict[str, Any]]
    shadow_dropped: int
    shadow_timed_out: int = 0


# -- limits and usage (server/admin/limits.py) ----------------------------------------------

class LimitValues(BaseModel):
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent_generations: int | None
    documents_per_day: int | None
    ingest_bytes_per_day: int | None
    max_stored_bytes: int | None
    weight: float


class LimitsUpdate(Request):
    """Overrides to set; a field given as null removes that override (the default
    applies again); fields not given keep their current override. Limits must be >= 1
    (a zero limit would refuse every request: delete the tenant's keys instead), weight
    > 0."""

    requests_per_minute: StrictInt | None = None
    tokens_per_minute: StrictInt | None = None
    max_concurrent_generations: StrictInt | None = None
    documents_per_day: StrictInt | None = None
    ingest_bytes_per_day: StrictInt | None = None
    max_stored_bytes: StrictInt | None = None
    weight: StrictFloat | StrictInt | None = None


class Limits(BaseModel):
    tenant: str
    object: Literal["tenant.limits"] = "tenant.limits"
    defaults: LimitValues
    overrides: dict[str, Any]
    effective: LimitValues
    active_generations: int = Field(description="Chat requests of the tenant in flight now.")


class Usage(BaseModel):
    tenant: str
    object: Literal["tenant.usage"] = "tenant.usage"
    day: str | None = Field(description="The UTC day (YYYY-MM-DD); null: all days.")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    documents: int
    bytes: int
