"""Training on the real small model (SmolLM2-135M-Instruct, fp32 on CPU) learns.

- an SFT adapter trained on a brand-voice set makes held-out prompts follow the voice
  (a checkable marker) where the base model does not;
- a domain adapter lowers held-out perplexity on a tenant's documents, without
  raising perplexity on general text much (the forgetting check);

The prepared model is cached in ``<repo>/.cache/test-models`` (or
``$LORAG_TEST_MODEL_CACHE``) across sessions: the GGUF conversion takes ~25 s once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapters import models
from adapters.models import MARKER, SMOLLM2_FOLDER, is_prepared, prepare_smollm2
from adapters.training import TrainSpec, Trainer
from adapters.training.corpus import demo_assets, general_texts

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEMO = json.loads((demo_assets() / "demo.json").read_text())
PIRATE = DEMO["markers"]["pirate"]
REPO_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2() -> Path:
    cache = Path(os.environ.get("LORAG_TEST_MODEL_CACHE", REPO_DIR / ".cache" / "test-models"))
    return prepare_smollm2(cache / SMOLLM2_FOLDER)


@pytest.fixture
def trainer(app, smollm2):
    app.tenants.create("acme")
    trainer = Trainer(app.settings.adapters.training, app.layout, app.jobs, app.tenants,
                      base_model=lambda: str(smollm2), register=None,
                      tenant_texts=lambda tenant: [], general_texts=general_texts)
    yield trainer
    trainer.shutdown()


def test_prepared_model_is_a_plain_hf_folder_and_preparing_again_is_instant(smollm2, monkeypatch):
    from transformers import AutoConfig, AutoTokenizer

    def convert_again(*args):
        raise AssertionError("a prepared model was converted again")

    assert is_prepared(smollm2)
    marker = (smollm2 / MARKER).read_bytes()
    monkeypatch.setattr(models, "_convert_gguf", convert_again)  # instant: nothing redone
    assert prepare_smollm2(smollm2) == smollm2
    assert (smollm2 / MARKER).read_bytes() == marker
    config = AutoConfig.from_pretrained(smollm2)
    assert config.model_type == "llama" and config.tie_word_embeddings
    assert not hasattr(config, "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and tokenizer.eos_token == "<|im_end|>"


def test_sft_brand_voice_is_followed_on_heldout_prompts(trainer):
    spec = TrainSpec(name="pirate", kind="sft", sft_file=demo_assets() / "sft" / "pirate.jsonl",
                     steps=30, lr=2e-3, holdout_fraction=0.1, marker=PIRATE,
                     marker_max_new_tokens=80, progress=False, checkpoint_every=0,
                     register_result=False)
    metrics = trainer.train("acme", spec).metrics
    marker = metrics["marker"]
    assert marker["prompts"] >= 5
    assert marker["base_rate"] == 0.0
    assert marker["adapter_rate"] >= 0.8, marker
    held = metrics["heldout"]
    assert held["adapter_loss"] < held["base_loss"] - 0.5
    # A voice that rewrites every answer shifts general text measurably (1.35x measured at
    # these settings; lr 1e-3 keeps it lower but the voice is not learnt in 30 steps);
    # the check catches catastrophic forgetting, which is several times the base.
    assert metrics["general"]["perplexity_ratio"] < 1.5


def test_domain_adapter_lowers_heldout_perplexity_on_tenant_documents(trainer):
    documents = [p.read_text() for p in sorted((demo_assets() / "corpus" / "acme").iterdir(),
                                               key=lambda p: p.name) if p.name.endswith(".md")]
    spec = TrainSpec(name="domain", kind="domain", texts=documents, steps=12, lr=1e-3,
                     block_size=128, holdout_fraction=0.34, progress=False, checkpoint_every=0,
                     register_result=False)
    metrics = trainer.train("acme", spec).metrics
    held, general = metrics["heldout"], metrics["general"]
    assert metrics["data"]["heldout_texts"] == 2
    assert held["adapter_perplexity"] < 0.95 * held["base_perplexity"], held
    assert general["perplexity_ratio"] < 1.1, general
