"""Chat bodies: OpenAI's shapes, plus lorag's ``retrieval`` in and ``citations`` out."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, Field, StrictBool, StrictFloat, StrictInt, ValidationInfo,
                      field_validator)

from lorag.core.modes import RetrievalMode
from server.schemas import MAX_TOP_K, FilterValue, Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import error_responses  # noqa: F401


class TextPart(Request):
    type: Literal["text"]
    text: str


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(Request):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(Request):
    id: str = Field(max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="`developer` is taken as `system`.")
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant's calls.")
    tool_call_id: str | None = Field(None, max_length=200, validate_default=True,
                                     description="The call a `tool` message answers.")
    content: str | list[TextPart] | None = Field(
        None, validate_default=True,
        description="May be null only for an assistant message with `tool_calls`.")

    @field_validator("tool_calls")
    @classmethod
    def _assistant_calls(cls, value: list | None, info: ValidationInfo) -> list | None:
        if value and info.data.get("role") != "assistant":
            raise ValueError("only assistant messages have tool_calls")
        return value

    @field_validator("tool_call_id")
    @classmethod
    def _tool_answers_a_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (info.data.get("role") == "tool") != (value is not None):
            raise ValueError("tool_call_id is required in, and only in, tool messages")
        return value

    @field_validator("content")
    @classmethod
    def _content_unless_calls(cls, value: object, info: ValidationInfo) -> object:
        if value is None and not (info.data.get("role") == "assistant" and info.data.get("tool_calls")):
            raise ValueError("content is required (null only for an assistant message "
                             "with tool_calls)")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def as_dict(self) -> dict:
        role = "system" if self.role == "developer" else self.role
        message: dict[str, Any] = {"role": role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c.id, "name": c.function.name,
                                      "arguments": c.function.arguments} for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionDefinition(Request):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema object.")
    strict: StrictBool | None = Field(None, description="Calls always follow `parameters` "
                                      "(guided decoding) when the call is forced; see the README.")


class FunctionTool(Request):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Request):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(Request):
    type: Literal["function"]
    function: NamedFunction


class TextFormat(Request):
    type: Literal["text"]


class JsonObjectFormat(Request):
    type: Literal["json_object"]


class JsonSchema(Request):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema.")
    strict: StrictBool | None = Field(None, description="Always honoured: the answer is "
                                      "decoded to follow the schema.")


class JsonSchemaFormat(Request):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[Union[TextFormat, JsonObjectFormat, JsonSchemaFormat],
                           Field(discriminator="type")]


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
    n: StrictInt = Field(1, ge=1, le=8, description="Answers to generate (each its own "
                         "engine request; a given seed is advanced by the choice's index).")
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20,
                                           description="Alternatives per token; needs logprobs.")
    presence_penalty: StrictFloat = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: StrictFloat = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, StrictFloat | StrictInt] | None = Field(
        None, description="Token id (as a string) -> bias from -100 to 100 added to its logit.")
    response_format: ResponseFormat | None = None
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
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

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, value: dict | None) -> dict | None:
        if value is not None and not all(k.isdigit() and -100 <= v <= 100 for k, v in value.items()):
            raise ValueError("keys must be token ids and biases between -100 and 100")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
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


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: None = None


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


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


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


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
