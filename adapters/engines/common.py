"""Pieces both engines share: prompt checks, adapter file snapshots, in-flight counts."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from adapters.engines.protocol import AdapterRef, GenerationRequest, InferenceEngine, Sampling
from lorag.core.errors import InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

PROMPT_PARAM = "messages"


def prompt_text(engine: InferenceEngine, request: GenerationRequest) -> str:
    """The text to generate from: ``prompt`` as given, or ``messages`` rendered with
    the chat template. Raises InvalidInput when neither or both are given."""
    if (request.prompt is None) == (request.messages is None):
        raise InvalidInput("give exactly one of prompt or messages", param=PROMPT_PARAM)
    if request.prompt is not None:
        return request.prompt
    return engine.render_chat(list(request.messages))


def room_for(prompt_tokens: int, max_tokens: int, max_model_len: int) -> int:
    """Tokens the completion may use; raises InvalidInput when the prompt fills the context."""
    if prompt_tokens >= max_model_len:
        raise InvalidInput(f"the prompt has {prompt_tokens} tokens; the model's context is "
                           f"{max_model_len} tokens", param=PROMPT_PARAM)
    if max_tokens < 1:
        raise InvalidInput("max_tokens must be at least 1", param="max_tokens")
    return min(max_tokens, max_model_len - prompt_tokens)


def check_logit_bias(sampling: Sampling, vocab_size: int) -> None:
    """Raises InvalidInput (param ``logit_bias``) for a token id outside the vocabulary."""
    for token_id, _ in sampling.logit_bias:
        if not 0 <= token_id < vocab_size:
            raise InvalidInput(f"logit_bias: token id {token_id} is not in the model's "
                               f"vocabulary of {vocab_size} tokens", param="logit_bias")


def adapter_label(ref: AdapterRef) -> str:
    return f"{ref.tenant_id}/{ref.name}/v{ref.version}"


class ChatPrompts:
    """Prompt rendering and token counting with the served model's tokenizer, for
    engines that hold it as ``_tokenizer`` once ``ready()``."""

    def render_chat(self, messages: list[dict]) -> str:
        self._require_ready()
        return self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        self._require_ready()
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _require_ready(self) -> None:
        if not self.ready():
            raise Unavailable("the inference engine is not running", param="model")


class AdapterSnapshots:
    """Engine-private, hard-linked copies of adapter folders, keyed by int id.

    An engine reads adapter files lazily (vLLM reloads an evicted adapter from disk
    while its requests may still be running); serving from a snapshot means deleting a
    version from the store can never pull files from under a running request. A
    snapshot is removed when the engine drops the adapter. Int ids are never reused,
    so a snapshot never stands for other weights.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        shutil.rmtree(self.root, ignore_errors=True)  # left by a previous run
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, ref: AdapterRef) -> Path:
        """The snapshot of ``ref`` (made on first use); raises NotFound when the version
        was deleted before the engine first saw it."""
        target = self.root / str(ref.int_id)
        if target.is_dir():
            return target
        source = Path(ref.path)
        if not (source / "adapter_config.json").is_file():
            raise NotFound(f"adapter {ref.name!r} version {ref.version} was deleted",
                           param="adapter", code="adapter_not_found")
        tmp = self.root / f".{ref.int_id}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(source, tmp, copy_function=_link_or_copy)
            os.rename(tmp, target)
        except FileNotFoundError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise NotFound(f"adapter {ref.name!r} version {ref.version} was deleted",
                           param="adapter", code="adapter_not_found") from None
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # lost a race with another request: theirs is fine
                raise
        return target

    def drop(self, ref: AdapterRef) -> None:
        shutil.rmtree(self.root / str(ref.int_id), ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


class InFlight:
    """Counts running requests per adapter id, so an adapter is dropped only when idle."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._idle: dict[int, asyncio.Event] = {}

    def add(self, int_id: int | None) -> None:
        if int_id is not None:
            self._counts[int_id] += 1

    def done(self, int_id: int | None) -> None:
        if int_id is None:
            return
        self._counts[int_id] -= 1
        if self._counts[int_id] <= 0:
            del self._counts[int_id]
            event = self._idle.pop(int_id, None)
            if event is not None:
                event.set()

    def total(self) -> int:
        return sum(self._counts.values())

    async def wait_idle(self, int_id: int) -> None:
        while self._counts[int_id] > 0:
            await self._idle.setdefault(int_id, asyncio.Event()).wait()


class AdapterUnloads:
    """Asks an engine to drop adapter versions, from any thread; a no-op before warm-up.

    The adapter store's unload listener: the store is synchronous (CLI, HTTP handlers)
    and the engine lives on its event loop. Holds the tasks it starts until they finish.
    """

    def __init__(self, engine: InferenceEngine):
        self.engine = engine
        self._tasks: set[asyncio.Task] = set()

    def __call__(self, ref: AdapterRef) -> None:
        loop: asyncio.AbstractEventLoop | None = getattr(self.engine, "loop", None)
        if loop is None or loop.is_closed() or not self.engine.ready():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            asyncio.run_coroutine_threadsafe(self.engine.remove_adapter(ref), loop)
            return
        task = loop.create_task(self.engine.remove_adapter(ref))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
