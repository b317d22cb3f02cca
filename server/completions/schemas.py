"""Completion bodies: OpenAI's legacy completions, plus lorag's ``retrieval`` in and
``citations`` out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, field_validator

from server.chat.schemas import Citation, ChatCompletionRequest, RetrievalParams, StreamOptions, Usage
# Re-exported: a route module takes its bodies and its error docs from one `schemas`.
from server.schemas import Request, error_responses  # noqa: F401


class CompletionRequest(Request):
    model: str = Field(description="The brand whose adapter completes the prompt.",
                       min_length=1, max_length=200)
    prompt: str | list[str] = Field(description="The text to complete, as it is (no chat "
                                    "template, no system prompt); a list of one string.")
    max_tokens: StrictInt | None = Field(16, ge=1, description="Completion tokens at most.")
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    top_p: StrictFloat = Field(1.0, gt=0.0, le=1.0)
    n: StrictInt = Field(1, ge=1, le=8)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="Up to 4 stop sequences.")
    seed: StrictInt | None = Field(None, ge=-2**63, le=2**63 - 1)
    logprobs: StrictInt | None = Field(None, ge=0, le=5, description="Alternatives per token "
                                       "(the sampled token's log-probability is always given).")
    echo: StrictBool = Field(False, description="Put the prompt before the completion.")
    presence_penalty: StrictFloat = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: StrictFloat = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, StrictFloat | StrictInt] | None = None
    best_of: StrictInt | None = Field(None, ge=1, le=1, description="Only 1 (the default).")
    user: str | None = Field(None, max_length=512, description="Your end user's id: also the "
                             "sticky key of a brand's traffic split.")
    retrieval: RetrievalParams | None = Field(
        None, description="lorag's extension: retrieval is off for completions unless asked "
        "for here (a `mode` other than `off`); the sources then go before the prompt.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("one prompt per request (a string, or a list of one string)")
        return value

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        return ChatCompletionRequest._at_most_four_stops(value)

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, value: dict | None) -> dict | None:
        return ChatCompletionRequest._token_biases(value)

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """A completion, or (``stream: true``) one event of its stream."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    citations: list[Citation] | None = Field(None, description="The sources put before the "
                                             "prompt (empty without retrieval); in a stream, "
                                             "on its first event.")
