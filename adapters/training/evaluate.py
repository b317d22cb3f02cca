"""Held-out loss / perplexity and greedy generations, for base vs adapter comparisons.

Pass a PEFT model and ``adapter=False`` to measure the base model: the adapter is
disabled for the duration of the call, so both numbers come from the same weights in
memory.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Sequence

from adapters.training.data import IGNORE, Example, collate


def _adapter_state(model, adapter: bool):
    if adapter or not hasattr(model, "disable_adapter"):
        return contextlib.nullcontext()
    return model.disable_adapter()


def mean_loss(model, examples: Sequence[Example], pad_id: int, *, adapter: bool = True,
              batch_size: int = 4) -> tuple[float, int]:
    """Token-weighted mean next-token loss over the labelled tokens, and their count."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad(), _adapter_state(model, adapter):
        for i in range(0, len(examples), batch_size):
            batch = collate(examples[i:i + batch_size], pad_id)
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits[:, :-1]
            targets = batch["labels"][:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                     targets.reshape(-1), ignore_index=IGNORE,
                                     reduction="sum").item()
            count += int((targets != IGNORE).sum())
    model.train(was_training)
    return (total / count if count else float("nan")), count


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def loss_report(model, examples: Sequence[Example], pad_id: int) -> dict:
    """``{tokens, base_loss, adapter_loss, base_perplexity, adapter_perplexity}``."""
    base, tokens = mean_loss(model, examples, pad_id, adapter=False)
    tuned, _ = mean_loss(model, examples, pad_id, adapter=True)
    return {"tokens": tokens, "base_loss": round(base, 4), "adapter_loss": round(tuned, 4),
            "base_perplexity": round(perplexity(base), 3),
            "adapter_perplexity": round(perplexity(tuned), 3)}


def generate_answers(model, tokenizer, conversations: Sequence[list[dict]], *,
                     adapter: bool = True, max_new_tokens: int = 96,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers to each conversation's prompt (its messages before the last
    assistant turn), left-padded in batches."""
    import torch

    prompts = [tokenizer.apply_chat_template(prompt_messages(c), tokenize=False,
                                             add_generation_prompt=True) for c in conversations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _adapter_state(model, adapter):
            for i in range(0, len(prompts), batch_size):
                encoded = tokenizer(prompts[i:i + batch_size], add_special_tokens=False,
                                    padding=True, return_tensors="pt")
                out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
                new = out[:, encoded["input_ids"].shape[1]:]
                answers += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def prompt_messages(conversation: list[dict]) -> list[dict]:
    """The messages before the conversation's last assistant turn."""
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    return conversation[:last]


def marker_report(model, tokenizer, conversations: Sequence[list[dict]], pattern: str, *,
                  max_new_tokens: int = 96, samples: int = 3) -> dict:
    """Share of held-out prompts whose greedy answer matches ``pattern`` (``re.search``),
    for the base model and the adapter, with a few sample answers of each."""
    regex = re.compile(pattern)
    report: dict = {"pattern": pattern, "prompts": len(conversations)}
    for label, adapter in (("base", False), ("adapter", True)):
        answers = generate_answers(model, tokenizer, conversations, adapter=adapter,
                                   max_new_tokens=max_new_tokens)
        hits = sum(1 for a in answers if regex.search(a))
        report[f"{label}_rate"] = round(hits / len(answers), 3) if answers else None
        report[f"{label}_samples"] = answers[:samples]
    return report
