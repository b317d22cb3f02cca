"""Training examples: chat JSONL for SFT (loss on assistant tokens only) and packed
token blocks of plain text for domain adaptation. Pure tokenizer work, no model.

An ``Example`` is ``(input_ids, labels)`` with ``labels[i] == IGNORE`` where no loss is
taken; the model shifts labels itself (``labels[i]`` is the target of position ``i``).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lorag.core.errors import InvalidInput

IGNORE = -100
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def load_chat_jsonl(path: Path, param: str = "sft") -> list[list[dict]]:
    """Conversations from a JSONL file of ``{"messages": [...]}`` lines (blank lines skipped).

    Raises InvalidInput naming the line when a line is not valid JSON or not a valid
    conversation (see ``check_messages``).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file", param=param)
    conversations = []
    for where, record in jsonl_records(path, param, prefix=f"{path.name} "):
        messages = record.get("messages") if isinstance(record, dict) else None
        conversations.append(check_messages(messages, where, param))
    if not conversations:
        raise InvalidInput(f"{path.name} holds no conversation", param=param)
    return conversations


def jsonl_records(path: Path, param: str, prefix: str = "") -> Iterable[tuple[str, object]]:
    """``(where, record)`` for each non-blank line of a JSONL file, ``where`` being
    ``"<prefix>line N"``; raises InvalidInput (``param``) naming the line that is not JSON."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{prefix}line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{prefix}line {number}: not JSON ({exc.msg})", param=param) from None


def check_messages(messages, where: str, param: str = "sft") -> list[dict]:
    """Validate one conversation: a list of ``{role, content}`` with role system, user or
    assistant, content a string, at least one assistant turn, and none first. Raises InvalidInput."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInput(f"{where}: 'messages' must be a non-empty list", param=param)
    for i, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise InvalidInput(f"{where}: message {i} must be {{role: system|user|assistant, "
                               f"content: string}}", param=param)
    if messages[0]["role"] == "assistant":
        raise InvalidInput(f"{where}: the first message may not be an assistant turn", param=param)
    if not any(m["role"] == "assistant" for m in messages):
        raise InvalidInput(f"{where}: no assistant turn to learn from", param=param)
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The chat template's rendering of ``messages`` and the character spans to learn.

    Each turn's text is what its rendering adds to the previous prefix's. For an
    assistant turn, the header the template adds as the generation prompt is excluded,
    and so is anything after the end-of-turn token (the model stops there when serving).
    Raises InvalidInput if the template does not render prefixes as prefixes.
    """
    def render(prefix: list[dict], generation_prompt: bool = False) -> str:
        if not prefix:
            return ""
        return tokenizer.apply_chat_template(prefix, tokenize=False,
                                             add_generation_prompt=generation_prompt)

    eos = tokenizer.eos_token or ""
    spans, previous = [], ""
    for i, message in enumerate(messages):
        current = render(messages[: i + 1])
        if not current.startswith(previous):
            raise InvalidInput("the chat template does not render a conversation's prefixes as "
                               "prefixes; per-turn loss masking needs that", param="sft")
        if message["role"] == "assistant":
            header = render(messages[:i], generation_prompt=True)
            if not current.startswith(header):
                raise InvalidInput("the chat template's generation prompt is not a prefix of the "
                                   "assistant turn", param="sft")
            end = len(current)
            if eos:
                cut = current.rfind(eos, len(header))
                end = cut + len(eos) if cut >= 0 else end
            spans.append((len(header), end))
        previous = current
    return previous, spans


def sft_example(tokenizer, messages: list[dict], max_length: int) -> Example | None:
    """Tokenize one conversation, labelling only assistant tokens; truncated on the right
    to ``max_length``; None when nothing learnable is left after truncation."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:max_length]
    labels = [token if _inside(start, spans) else IGNORE
              for token, (start, _end) in zip(ids, encoded["offset_mapping"])]
    example = Example(list(ids), labels)
    return example if example.target_tokens else None


def _inside(position: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def text_blocks(tokenizer, texts: Iterable[str], block_size: int) -> list[Example]:
    """Pack texts (each followed by the end-of-text token) into blocks of ``block_size``
    tokens, every token a target; the last partial block is kept if it has 2+ tokens."""
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for text in texts:
        if text.strip():
            stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + separator)
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    return [Example(block, list(block)) for block in blocks if len(block) >= 2]


def digest(items: Sequence) -> str:
    """SHA-256 of a training set (conversations or texts, in order): equal digests, the
    same data. Canonical JSON, so it does not depend on the file's formatting."""
    canonical = json.dumps(list(items), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def split_holdout(items: Sequence, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic shuffle, then ``(train, heldout)``; held-out gets at least one item
    when there are two or more, and training always keeps at least one."""
    order = list(items)
    random.Random(seed).shuffle(order)
    if len(order) < 2 or fraction <= 0:
        return order, []
    count = min(len(order) - 1, max(1, round(len(order) * fraction)))
    return order[count:], order[:count]


def collate(examples: Sequence[Example], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(examples: Sequence[Example], batch_size: int, steps: int, seed: int,
            start_step: int = 0):
    """``steps`` batches drawn epoch by epoch in a seeded order; skips the first
    ``start_step`` batches so that a resumed run sees what an uninterrupted one would."""
    rng = random.Random(seed)
    order: list[int] = []
    for step in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch.append(examples[order.pop()])
        if step >= start_step:
            yield step, batch
