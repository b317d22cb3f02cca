"""One LoRA training run on CPU (or whatever device torch defaults to), in fp32.

``run_training`` loads the base model, builds the examples, trains a PEFT LoRA with
AdamW (linear warm-up then linear decay), writes checkpoints, and evaluates base vs
adapter on the held-out split and on general text (the forgetting check). It returns
the final adapter folder, holding ``metrics.json`` beside the PEFT files.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from adapters.training import data, evaluate
from adapters.training.spec import TrainingKind, TrainSpec
from lorag.core.errors import InvalidInput

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
STATE_FILE = "trainer_state.pt"
KEEP_CHECKPOINTS = 2
# Token budget of the forgetting check: enough for a stable perplexity, a few seconds.
GENERAL_MAX_TOKENS = 4096

StepCallback = Callable[[int, float], None]


@dataclass
class Examples:
    train: list[data.Example]
    heldout: list[data.Example]
    heldout_conversations: list[list[dict]]
    stats: dict


def build_examples(spec: TrainSpec, tokenizer, texts: Sequence[str] | None) -> Examples:
    """Tokenized train/held-out examples for the spec's kind; raises InvalidInput when
    no training data is left."""
    if spec.kind is TrainingKind.SFT:
        conversations = spec.conversations or data.load_chat_jsonl(spec.sft_file)
        conversations = [data.check_messages(c, f"conversation {i}") for i, c in enumerate(conversations)]
        train_conv, held_conv = data.split_holdout(conversations, spec.holdout_fraction, spec.seed)
        train = _sft(tokenizer, train_conv, spec.max_length)
        heldout = _sft(tokenizer, held_conv, spec.max_length)
        stats = {"conversations": len(conversations), "heldout_conversations": len(held_conv),
                 "skipped": len(conversations) - len(train) - len(heldout),
                 "sha256": data.digest(conversations)}
    else:
        texts = [t for t in (texts or []) if t.strip()]
        if not texts:
            raise InvalidInput("no text to train on: ingest documents for the tenant first",
                               param="texts")
        train_texts, held_texts = data.split_holdout(texts, spec.holdout_fraction, spec.seed)
        train = data.text_blocks(tokenizer, train_texts, spec.block_size)
        heldout = data.text_blocks(tokenizer, held_texts, spec.block_size)
        held_conv = []
        stats = {"texts": len(texts), "heldout_texts": len(held_texts),
                 "sha256": data.digest(texts)}
    if not train:
        raise InvalidInput("no training example left after tokenization", param=spec.kind.value)
    stats.update(train_examples=len(train), heldout_examples=len(heldout),
                 train_target_tokens=sum(e.target_tokens for e in train),
                 heldout_target_tokens=sum(e.target_tokens for e in heldout))
    return Examples(train, heldout, held_conv, stats)


def _sft(tokenizer, conversations, max_length) -> list[data.Example]:
    examples = (data.sft_example(tokenizer, c, max_length) for c in conversations)
    return [e for e in examples if e is not None]


def load_base(path: str):
    """``(model, tokenizer)`` of the base model in fp32, with a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


def add_lora(model, spec: TrainSpec):
    """Wrap ``model`` in a PEFT LoRA; raises InvalidInput for targets the model lacks."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in spec.targets if t not in names]
    if missing:
        raise InvalidInput(f"target modules {missing} are not in the base model", param="targets")
    config = LoraConfig(r=spec.rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.dropout,
                        target_modules=list(spec.targets), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def run_training(spec: TrainSpec, base: str, workdir: Path, *, texts: Sequence[str] | None = None,
                 general_texts: Sequence[str] = (), on_step: StepCallback | None = None) -> tuple[Path, dict]:
    """Train, checkpoint and evaluate; returns ``(final adapter folder, metrics)``.

    ``workdir`` holds ``checkpoints/`` and ``final/``; with ``spec.resume`` the latest
    checkpoint there is continued. Raises InvalidInput for bad data or spec.
    """
    import torch

    started = time.monotonic()
    torch.manual_seed(spec.seed)
    model, tokenizer = load_base(base)
    examples = build_examples(spec, tokenizer, texts)
    model = add_lora(model, spec)
    optimizer, scheduler = _optimizer(model, spec)
    workdir.mkdir(parents=True, exist_ok=True)
    first_step = _resume(model, optimizer, scheduler, workdir, spec) if spec.resume else 0
    losses = _train(model, tokenizer, examples.train, spec, optimizer, scheduler, workdir,
                    first_step, on_step)
    train_seconds = time.monotonic() - started
    log.info("evaluating %s: held-out, general text%s", spec.name, ", marker" if spec.marker else "")
    metrics = _metrics(spec, base, model, tokenizer, examples, general_texts, losses,
                       first_step, train_seconds)
    final = workdir / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final, safe_serialization=True)
    metrics["seconds_total"] = round(time.monotonic() - started, 1)
    write_metrics(final, metrics)
    return final, metrics


def write_metrics(folder: Path, metrics: dict) -> Path:
    path = folder / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def _optimizer(model, spec: TrainSpec):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    warmup, total = spec.warmup, spec.steps

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _train(model, tokenizer, train, spec, optimizer, scheduler, workdir, first_step,
           on_step) -> list[float]:
    import torch

    model.train()
    pad_id = tokenizer.pad_token_id
    losses: list[float] = []
    for step, batch in data.batches(train, spec.batch_size, spec.steps, spec.seed, first_step):
        loss = model(**data.collate(batch, pad_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        done = step + 1
        if spec.checkpoint_every and done % spec.checkpoint_every == 0 and done < spec.steps:
            _save_checkpoint(model, optimizer, scheduler, workdir, done, spec)
        if on_step:
            on_step(done, losses[-1])
    return losses


def _save_checkpoint(model, optimizer, scheduler, workdir: Path, step: int, spec: TrainSpec) -> None:
    import torch

    root = workdir / "checkpoints"
    folder = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "spec": spec.fingerprint(),
                "torch_rng": torch.get_rng_state()}, tmp / STATE_FILE)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint step=%d at %s", step, folder)


def latest_checkpoint(workdir: Path) -> Path | None:
    found = sorted((workdir / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def _resume(model, optimizer, scheduler, workdir: Path, spec: TrainSpec) -> int:
    """Load the latest checkpoint into the model and optimizer; returns its step (0 if none).
    Raises InvalidInput when it was written by a different spec."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = latest_checkpoint(workdir)
    if folder is None:
        log.info("no checkpoint in %s; starting from step 0", workdir)
        return 0
    state = torch.load(folder / STATE_FILE, weights_only=False)
    if state["spec"] != spec.fingerprint():
        raise InvalidInput(f"the checkpoint in {folder} was written by a different training "
                           "spec; start without resume", param="resume")
    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed from %s", folder)
    return int(state["step"])


def _metrics(spec, base, model, tokenizer, examples: Examples, general_texts, losses,
             first_step, train_seconds) -> dict:
    import peft
    import torch
    import transformers

    pad_id = tokenizer.pad_token_id
    window = max(1, min(10, len(losses) // 4 or 1))
    metrics = {
        "kind": spec.kind.value, "name": spec.name, "base_model": str(base),
        "spec": spec.model_dump(mode="json", exclude={"conversations", "texts"}),
        "data": examples.stats,
        "train": {"steps": spec.steps, "resumed_from_step": first_step,
                  "seconds": round(train_seconds, 1),
                  "first_loss": round(sum(losses[:window]) / window, 4) if losses else None,
                  "final_loss": round(sum(losses[-window:]) / window, 4) if losses else None,
                  "loss_curve": _curve(losses, first_step)},
        "heldout": evaluate.loss_report(model, examples.heldout, pad_id) if examples.heldout else None,
        "general": _general(model, tokenizer, general_texts, spec.block_size),
        "marker": None,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
    }
    if spec.marker and examples.heldout_conversations:
        metrics["marker"] = evaluate.marker_report(
            model, tokenizer, examples.heldout_conversations, spec.marker,
            max_new_tokens=spec.marker_max_new_tokens)
    return metrics


def _general(model, tokenizer, texts, block_size) -> dict | None:
    """The forgetting check: base vs adapter perplexity on text that is not the tenant's."""
    blocks = data.text_blocks(tokenizer, texts, block_size)
    budget, kept = GENERAL_MAX_TOKENS, []
    for block in blocks:
        if budget <= 0:
            break
        kept.append(block)
        budget -= len(block.input_ids)
    if not kept:
        return None
    report = evaluate.loss_report(model, kept, tokenizer.pad_token_id)
    report["perplexity_ratio"] = round(report["adapter_perplexity"] / report["base_perplexity"], 4)
    return report


def _curve(losses: list[float], first_step: int, points: int = 50) -> list[list]:
    every = max(1, len(losses) // points)
    return [[first_step + i + 1, round(loss, 4)] for i, loss in enumerate(losses)
            if (i + 1) % every == 0 or i == len(losses) - 1]
