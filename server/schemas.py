"""Request and response bodies of the HTTP API (pydantic), by feature.

Requests refuse unknown fields, so a misspelt option is a 400 naming it rather than
silently ignored. Chat follows OpenAI's shapes, plus ``retrieval`` in and ``citations``
out.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt,
                      field_validator)

MAX_TOP_K = 100
FilterValue = Union[str, int, float, bool]


class Request(BaseModel):
    # Unknown fields are refused; numbers and booleans are Strict* types, so `true` is
    # not taken for 1, nor 1 for `true` (the OpenAPI document says integer, boolean).
    model_config = ConfigDict(extra="forbid")


# -- errors -------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error body for ``statuses``."""
    return {status: {"model": ErrorResponse} for status in statuses}


# -- chat ---------------------------------------------------------------------------------

class TextPart(Request):
    type: Literal["text"]
    text: str


class ChatMessage(Request):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class RetrievalParams(Request):
    """lorag's extension: override the brand's retrieval defaults for this request."""

    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K, description="Chunks to retrieve.")
    mode: Literal["dense", "lexical", "hybrid", "off"] | None = Field(
        None, description="Search mode; `off` answers without documents.")
    filters: dict[str, FilterValue] | None = Field(
        None, description="Metadata filters: a chunk's document must have each field equal "
        "to the value given.")


class StreamOptions(Request):
    include_usage: StrictBool = False


class ChatCompletionRequest(Request):
    model: str = Field(description="The brand to answer as (see GET /v1/models).",
                       min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: StrictInt | None = Field(None, ge=1, description="Completion tokens at most.")
    max_completion_tokens: StrictInt | None = Field(None, ge=1, description="Alias of max_tokens.")
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences.")
    seed: StrictInt | None = Field(None, ge=-2**63, le=2**63 - 1)
    n: StrictInt = Field(1, ge=1, le=1, description="Only 1 is supported.")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    retrieval: RetrievalParams | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (len(value) > 4 or not all(value)):
            raise ValueError("at most 4 non-empty stop sequences")
        return value

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class Citation(BaseModel):
    number: int = Field(description="The [n] the model was given for this source.")
    document_id: str
    chunk_id: int
    title: str | None
    source: str | None
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[Citation]


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a stream. The first chunk carries ``citations``; the
    last one ``finish_reason`` and ``usage`` (or, with ``stream_options.include_usage``,
    a final chunk with no choices does, as OpenAI's)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    citations: list[Citation] | None = None


# -- models (brands) ------------------------------------------------------------------------

class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# -- search ---------------------------------------------------------------------------------

class SearchRequest(Request):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K)
    mode: Literal["dense", "lexical", "hybrid"] | None = None
    filters: dict[str, FilterValue] | None = None
    document_ids: list[str] | None = Field(None, max_length=1000)


class SearchResult(BaseModel):
    chunk_id: int
    document_id: str
    position: int
    text: str
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    score: float = Field(description="The mode's own score: cosine (dense), BM25 (lexical), "
                                     "reciprocal rank fusion (hybrid).")
    dense_score: float | None = Field(
        description="The chunk's cosine to the query where the dense search ranked it.")
    lexical_match: bool = Field(
        description="The lexical search found it: it shares a content word with the query. "
                    "Chat shows the model only chunks that do or whose cosine reaches the "
                    "relevance floor.")


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchResult]


# -- documents and jobs ---------------------------------------------------------------------

class DocumentIn(Request):
    id: str = Field(min_length=1, max_length=512,
                    description="Stable id: sending an id again replaces that document when "
                    "its text changed.")
    text: str = Field(min_length=1)
    title: str | None = Field(None, max_length=1000)
    source: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsCreate(Request):
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)


# Bodies a route parses itself (it takes more than one content type); listed so that the
# OpenAPI document still describes them.
EXTRA_OPENAPI_MODELS = [DocumentsCreate]


class Document(BaseModel):
    id: str
    object: Literal["document"] = "document"
    title: str | None
    source: str | None
    metadata: dict[str, Any]
    chunks: int
    characters: int
    content_hash: str
    created_at: float
    updated_at: float


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Document]
    has_more: bool


class Deleted(BaseModel):
    id: str
    object: str
    deleted: Literal[True] = True


class JobFailure(BaseModel):
    item: str
    code: str
    message: str


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    submitted: int
    completed: int
    failed: int
    result: dict[str, Any] | None
    error: str | None
    failures: list[JobFailure]
    created_at: float
    updated_at: float


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]


# -- admin ----------------------------------------------------------------------------------

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
    mode: Literal["dense", "lexical", "hybrid", "off"] | None = None
    filters: dict[str, FilterValue] | None = None


class BrandCreate(Request):
    name: str = Field(description="The `model` clients send; lowercase, digits, '-', '_'.")
    adapter: str | None = Field(None, description="Adapter name; None = the base model.")
    system_prompt: str = Field("", max_length=20_000)
    retrieval: BrandRetrieval = Field(default_factory=BrandRetrieval)


class BrandUpdate(Request):
    """Only the fields given change; ``adapter: null`` switches to the base model."""

    adapter: str | None = None
    system_prompt: str | None = Field(None, max_length=20_000)
    retrieval: BrandRetrieval | None = None


class Brand(BaseModel):
    name: str
    object: Literal["brand"] = "brand"
    tenant: str
    adapter: str | None
    system_prompt: str
    retrieval: dict[str, Any]
    created_at: float
    updated_at: float


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


class AdapterList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdapterVersion]


class AdapterDeleted(BaseModel):
    object: Literal["list"] = "list"
    deleted: list[AdapterVersion]


class TrainingCreate(Request):
    """A LoRA training run (see ``adapters.training.TrainSpec`` for every bound)."""

    name: str = Field(description="Adapter name the result is registered under.")
    kind: Literal["sft", "domain"] = "sft"
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
