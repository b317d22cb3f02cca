"""Chat bodies: OpenAI's shapes, plus lorag's ``retrieval`` in and ``citations`` out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, field_validator

from lorag.core.modes import RetrievalMode
from server.schemas import MAX_TOP_K, FilterValue, Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


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
    mode: RetrievalMode | None = Field(
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
    user: str | None = Field(None, max_length=512, description="Your end user's id: also the "
                             "sticky key of a brand's traffic split.")
    retrieval: RetrievalParams | None = None
    store: StrictBool | None = Field(None, description="Keep the answer with its provenance "
                                     "(GET /v1/chat/completions/{id}); default: the brand's, "
                                     "else the server's setting.")
    metadata: dict[str, str] | None = Field(
        None, description="Up to 16 key-value pairs kept with a stored answer (filter the "
        "list by them); `session_id` is the split's sticky key when `user` is not given.")

    @field_validator("metadata")
    @classmethod
    def _openai_metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(
                not 0 < len(k) <= 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 pairs, keys of 1-64 and values of at most 512 characters")
        return value

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
    location: str | None = Field(None, description="Where in the document the chunk lies, "
                                 "for formats that say: section path, page, slide or sheet "
                                 "(\"Warranty > Returns\", \"slide 4\", \"page 12\").")


class Grounding(BaseModel):
    """lorag's grounding guard on this answer (the brand's ``quality.grounding``)."""

    mode: Literal["flag", "abstain"]
    groundedness: float | None = Field(description="Share of answer sentences a source "
                                       "supports; null for an answer without sentences.")
    threshold: float
    grounded: bool
    abstained: bool = Field(description="The answer was replaced by the brand's fallback text.")
    unsupported: list[str] = Field(description="The answer sentences no source supports.")


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
    grounding: Grounding | None = Field(None, description="Set when the brand's grounding "
                                        "guard is on (flag or abstain).")


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
    grounding: Grounding | None = None  # on the last chunk, when the brand's guard is on


# -- stored chat completions ---------------------------------------------------------------

class StoredCompletion(ChatCompletion):
    """A stored answer: the completion as it was returned, its ``metadata`` and lorag's
    ``provenance`` (target, adapter version and weights' sha256, chunks and scores,
    prompt hash, prompt template hash, the tenant index's state ``{covered, generation}``,
    sampling, latency)."""

    metadata: dict[str, str]
    provenance: dict


class StoredCompletionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredCompletion]
    first_id: str | None
    last_id: str | None
    has_more: bool


class StoredMessage(BaseModel):
    id: str
    role: str
    content: str
    name: str | None = None
    content_parts: None = None


class StoredMessageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StoredMessage]
    first_id: str | None
    last_id: str | None
    has_more: bool


class MetadataUpdate(Request):
    metadata: dict[str, str] | None = Field(description="Replaces the stored metadata.")

    @field_validator("metadata")
    @classmethod
    def _limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return ChatCompletionRequest._openai_metadata_limits(value)
