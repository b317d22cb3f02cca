"""OpenAI's Responses API request and response object (``file_search`` is the tool)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from server.schemas import Request
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import Deleted, error_responses  # noqa: F401
from server.vector_stores.schemas import FILTER_DOC


class InputText(Request):
    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = Field(
        None, description="Of an earlier answer's output_text given back; not read.")


class InputMessage(Request):
    type: Literal["message"] | None = None
    id: str | None = Field(None, description="Of an earlier output item given back; not read.")
    status: str | None = Field(None, description="Of an earlier output item; not read.")
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText] = Field(description="Text only: input_text parts (images and "
                                           "files are refused).")


class FileSearchTool(Request):
    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1, max_length=16)
    filters: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    max_num_results: StrictInt | None = Field(None, ge=1, le=50)


class ToolChoiceFileSearch(Request):
    type: Literal["file_search"]


class TextFormat(Request):
    type: Literal["text"]


class TextOptions(Request):
    format: TextFormat


class ResponseCreate(Request):
    model: str = Field(min_length=1, max_length=200, description="The brand to answer as.")
    input: str | list[InputMessage] = Field(description="A user message, or messages.")
    instructions: str | None = Field(None, max_length=100_000,
                                     description="A system message for this request only.")
    tools: list[FileSearchTool] = Field(default_factory=list, max_length=1,
                                        description="At most one file_search tool.")
    tool_choice: Literal["auto", "required", "none"] | ToolChoiceFileSearch = Field(
        "auto", description="`none` answers without searching; the others search.")
    previous_response_id: str | None = Field(None, max_length=100)
    stream: StrictBool = False
    store: StrictBool = Field(True, description="Keep the response (for previous_response_id "
                              "and GET /v1/responses/{id}).")
    max_output_tokens: StrictInt | None = Field(None, ge=1)
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat = Field(1.0, gt=0.0, le=1.0)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)
    user: str | None = Field(None, max_length=512, description="The sticky key of a brand's split.")
    include: list[Literal["file_search_call.results"]] = Field(default_factory=list)
    text: TextOptions | None = Field(None, description="Plain text only.")
    truncation: Literal["auto"] | None = Field(
        None, description="lorag always fits the context by dropping sources, then the oldest "
        "turns (`auto`); `disabled` is refused.")
    parallel_tool_calls: StrictBool | None = Field(None, description="lorag makes at most one "
                                                   "search call per response.")


class Response(BaseModel):
    """The response object; ``output`` items are ``file_search_call`` and ``message``."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[dict[str, Any]]
    parallel_tool_calls: bool = False
    previous_response_id: str | None
    store: bool
    temperature: float | None
    top_p: float
    tool_choice: Any
    tools: list[dict[str, Any]]
    text: dict[str, Any] = {"format": {"type": "text"}}
    truncation: Literal["auto"] = "auto"
    usage: dict[str, Any] | None
    metadata: dict[str, str]
    user: str | None = None
