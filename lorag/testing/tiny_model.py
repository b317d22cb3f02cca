"""A tiny random Llama with its own tokenizer, and random LoRA adapters for it.

Built offline in about a second, for tests and benchmarks: both vLLM and transformers
load the model, and vLLM serves the adapters. Heads are 32 wide because vLLM's CPU
attention supports no smaller head size.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB = 512
TINY_SEED = 1234

# A few KB of plain English so that the BPE merges look like words.
_TEXT = """\
The quick brown fox jumps over the lazy dog. A tenant owns documents, brands and adapters.
Each brand of a tenant picks an adapter, a system prompt and retrieval settings. The
assistant answers questions about the documents of the tenant and cites its sources.
Retrieval finds the chunks that are closest to the question, and the engine writes the
answer with the adapter of the brand. Thank you for your question; here is the answer.
Please contact support if the product does not work as described in the manual.
Our store opens at nine in the morning and closes at six in the evening, every day
except public holidays. Orders ship within two business days and arrive within a week.
Returns are accepted within thirty days of delivery when the item is unused and complete.
The warranty covers defects in materials and workmanship for two years from purchase.
To reset the device, hold the power button for ten seconds until the light blinks twice.
The battery lasts about eight hours; charge it fully before the first use.
Hello! How can I help you today? I would like to know the price of the blue model.
The blue model costs forty dollars and the red model costs fifty dollars.
What is the capital of France? The capital of France is Paris, a city on the Seine.
Water boils at one hundred degrees Celsius at sea level and freezes at zero degrees.
The sun rises in the east and sets in the west. There are seven days in a week.
Numbers: one two three four five six seven eight nine ten eleven twelve 0 1 2 3 4 5 6 7 8 9.
Kind regards, the support team. Best wishes, and have a wonderful day.
"""


def tiny_corpus() -> list[str]:
    """The built-in English lines the tiny tokenizer is trained on."""
    return [line for line in _TEXT.splitlines() if line.strip()]


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(tiny_corpus() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None, model_max_length=2048)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _build_model(tokenizer, seed: int, hidden_size: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        # A wider init than 0.02 so that logits are far apart and greedy choices are
        # not near-ties that float rounding could flip between engines.
        initializer_range=0.2,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_model(folder: Path, *, seed: int = TINY_SEED, vocab_size: int = TINY_VOCAB,
                     hidden_size: int = 64) -> Path:
    """Build (once) a tiny random Llama + ChatML tokenizer in ``folder`` and return it.

    Hidden size 64 (another ``hidden_size`` makes an incompatible base for tests), 2
    layers, 4 query heads and 2 key/value heads of 32, vocabulary ``vocab_size``.

    Reuses ``folder`` when it already holds a built model; builds into a temporary
    sibling and renames it into place, so a half-built folder is never seen.
    """
    folder = Path(folder)
    if (folder / ".complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=folder.parent))
    try:
        tokenizer = _train_tokenizer(vocab_size)
        model = _build_model(tokenizer, seed, hidden_size)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text(json.dumps({"seed": seed, "vocab_size": vocab_size,
                                                    "hidden_size": hidden_size}))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process won the race, or an old partial folder is there
            if not (folder / ".complete").exists():
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def make_lora(base: Path, out: Path, *, seed: int, rank: int = 8,
              targets: Iterable[str] = ("q_proj", "v_proj"), alpha: int = 16,
              scale: float = 0.5) -> Path:
    """Save a PEFT LoRA adapter for ``base`` in ``out`` with random non-zero A and B.

    ``scale`` is the standard deviation of the random B weights (PEFT initialises B
    to zero, which would make the adapter a no-op); the outputs then differ from the
    base model's. Returns ``out``.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[1] ** 0.5)
            elif "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out, safe_serialization=True)
    _record_base_path(out, base)
    return out


def _record_base_path(out: Path, base: Path) -> None:
    """Point ``base_model_name_or_path`` at the base folder, as a trained adapter would."""
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(Path(base))
    cfg_path.write_text(json.dumps(cfg, indent=2))
