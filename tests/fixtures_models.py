"""Session-wide tiny model and LoRA adapters for tests (imported by tests/conftest.py).

    def test_x(tiny_model, tiny_lora_factory):
        base = tiny_model                        # Path of an HF folder (Llama + ChatML tokenizer)
        lora = tiny_lora_factory(seed=1)         # Path of a PEFT LoRA folder on that base
        other = tiny_lora_factory(seed=2, rank=4, targets=("q_proj", "k_proj", "v_proj", "o_proj"))

Adapters are cached per argument set for the whole session: treat them as read-only
(copy one with shutil.copytree before corrupting it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lorag.testing.tiny_model import build_tiny_model, make_lora


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama (hidden 64, 2 layers, vocab 512, ChatML template), built once."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_lora_factory(tiny_model, tmp_path_factory) -> Callable[..., Path]:
    """``make(seed, rank=8, targets=("q_proj", "v_proj"), alpha=16) -> Path``, cached."""
    root = tmp_path_factory.mktemp("tiny-loras")
    made: dict[tuple, Path] = {}

    def make(seed: int, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"),
             alpha: int = 16) -> Path:
        key = (seed, rank, tuple(targets), alpha)
        if key not in made:
            name = f"s{seed}-r{rank}-a{alpha}-{'-'.join(targets)}"
            made[key] = make_lora(tiny_model, root / name, seed=seed, rank=rank,
                                  targets=tuple(targets), alpha=alpha)
        return made[key]

    return make
