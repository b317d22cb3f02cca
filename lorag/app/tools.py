"""Function calling: the tools a chat may call, how the model is told about them, how
its output becomes tool calls, and how tool calls and results render in a prompt.

The model is told about the tools in the system message, in the Hermes format most
open chat models are tuned on (``<tools>`` JSON, answers as ``<tool_call>{"name",
"arguments"}</tool_call>``); lorag renders it itself, so it works with any chat
template, also one that knows nothing of tools. How the output is read depends on
``tool_choice``:

- a named function: the completion is guided (the engine's structured output) to that
  function's ``parameters`` schema, and is the call's arguments;
- ``required``: guided to a JSON array of ``{"name", "arguments"}`` calls of the tools
  given (at least one);
- ``auto``: unconstrained; ``<tool_call>`` blocks in the answer become calls, the rest
  stays the answer's content;
- ``none``: the tools are not shown and no call is read.

Guided decoding makes the first two work with any model, even a random one; ``auto``
needs a model that writes the format.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

from adapters.engines.protocol import StructuredOutput
from lorag.core.errors import InvalidInput

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
ANY_OBJECT: dict = {"type": "object"}

TOOLS_INSTRUCTIONS = (
    "You may call one or more functions to help answer. The functions are described "
    "in JSON Schema within <tools></tools>:\n<tools>\n{tools}\n</tools>\n"
    "To call a function, reply with a JSON object of its name and arguments within "
    "<tool_call></tool_call> tags:\n<tool_call>\n{{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}}\n</tool_call>")


class ToolMode(str, Enum):
    """How the answer is read (the request's ``tool_choice``)."""

    NONE = "none"
    AUTO = "auto"
    REQUIRED = "required"
    NAMED = "function"


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, description and ``parameters`` schema."""

    name: str
    description: str = ""
    parameters: dict | None = None

    def to_dict(self) -> dict:
        function = {"name": self.name, "description": self.description,
                    "parameters": self.parameters or ANY_OBJECT}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI gives it


@dataclass(frozen=True)
class ToolPlan:
    """The tools of one request and how its answer is read."""

    tools: tuple[Tool, ...] = ()
    mode: ToolMode = ToolMode.NONE
    function: str | None = None  # the named function (mode NAMED)

    @classmethod
    def of(cls, tools: Sequence[Tool], choice: str | None) -> "ToolPlan":
        """``choice``: none / auto / required, or a function's name; None: ``auto`` with
        tools, else ``none``. Raises InvalidInput (param ``tool_choice``) for a choice
        that names no given tool or needs tools when there are none."""
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise InvalidInput("tools: each function needs its own name", param="tools")
        if choice is None:
            return cls(tuple(tools), ToolMode.AUTO if tools else ToolMode.NONE)
        modes = {mode.value: mode for mode in (ToolMode.NONE, ToolMode.AUTO, ToolMode.REQUIRED)}
        if choice in modes:
            if modes[choice] is not ToolMode.NONE and not tools:
                raise InvalidInput(f"tool_choice {choice!r} needs tools", param="tool_choice")
            return cls(tuple(tools), modes[choice])
        if choice not in names:
            raise InvalidInput(f"tool_choice names function {choice!r}, which is not among "
                               "the tools", param="tool_choice")
        return cls(tuple(tools), ToolMode.NAMED, choice)

    @property
    def active(self) -> bool:
        return self.mode is not ToolMode.NONE

    def instructions(self) -> str:
        """The tools' part of the system message ("" when the tools are not shown)."""
        if not self.active:
            return ""
        shown = [t for t in self.tools if self.mode is not ToolMode.NAMED or t.name == self.function]
        return TOOLS_INSTRUCTIONS.format(tools="\n".join(json.dumps(t.to_dict()) for t in shown))

    def constraint(self) -> StructuredOutput | None:
        """The guided decoding a forced call needs (None for auto and none)."""
        if self.mode is ToolMode.NAMED:
            return StructuredOutput(self._tool(self.function).parameters or ANY_OBJECT)
        if self.mode is ToolMode.REQUIRED:
            calls = [{"type": "object", "properties": {
                "name": {"enum": [tool.name]}, "arguments": tool.parameters or ANY_OBJECT},
                "required": ["name", "arguments"], "additionalProperties": False}
                for tool in self.tools]
            return StructuredOutput({"type": "array", "minItems": 1, "items": {"anyOf": calls}})
        return None

    def read(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """(content, calls) of a whole answer. A forced call's output that is not the
        JSON asked for (cut by max_tokens) stays content, with no calls."""
        if self.mode is ToolMode.NAMED:
            return (None, [new_call(self.function, text)]) if _is_json(text) else (text, [])
        if self.mode is ToolMode.REQUIRED:
            try:
                calls = [new_call(c["name"], json.dumps(c["arguments"])) for c in json.loads(text)]
            except (ValueError, TypeError, KeyError):  # not the array asked for (cut short)
                return text, []
            return (None, calls) if calls else (text, [])
        if self.mode is ToolMode.AUTO:
            return _read_tagged(text, {tool.name for tool in self.tools})
        return text, []

    def _tool(self, name: str | None) -> Tool:
        return next(tool for tool in self.tools if tool.name == name)


def new_call(name: str, arguments: str) -> ToolCall:
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments)


def render_message(message: dict) -> dict:
    """A conversation message as the chat template gets it: an assistant's tool calls
    as ``<tool_call>`` blocks after its text, a tool's result as a user turn in
    ``<tool_response>`` (any template renders these two roles)."""
    if message["role"] == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}
    calls = message.get("tool_calls")
    if message["role"] == "assistant" and calls:
        blocks = [f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': _loads(c['arguments'])})}"
                  "\n</tool_call>" for c in calls]
        text = "\n".join(([message["content"]] if message["content"] else []) + blocks)
        return {"role": "assistant", "content": text}
    return {"role": message["role"], "content": message["content"]}


def _read_tagged(text: str, names: set[str]) -> tuple[str | None, list[ToolCall]]:
    calls = []
    for block in TOOL_CALL.findall(text):
        try:
            call = json.loads(block)
        except ValueError:
            continue
        if isinstance(call, dict) and call.get("name") in names:
            calls.append(new_call(call["name"], json.dumps(call.get("arguments") or {})))
    if not calls:
        return text, []
    rest = TOOL_CALL.sub("", text).strip()
    return rest or None, calls


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _loads(arguments: str) -> object:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
