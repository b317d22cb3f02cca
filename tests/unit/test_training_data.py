"""Training data: chat JSONL validation, assistant-only loss masks, splits, packing, batches."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from adapters.training import data
from adapters.training.spec import TrainingKind, TrainSpec
from lorag.core.errors import InvalidInput

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the price of the blue model?"},
    {"role": "assistant", "content": "Forty dollars."},
    {"role": "user", "content": "And the red one?"},
    {"role": "assistant", "content": "Fifty dollars, kind regards."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def _learned_text(tokenizer, example: data.Example) -> list[str]:
    """The decoded runs of consecutive labelled tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != data.IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def test_only_assistant_turns_and_their_end_token_are_learned(tokenizer):
    example = data.sft_example(tokenizer, CONVERSATION, max_length=512)
    assert _learned_text(tokenizer, example) == [
        "Forty dollars.<|im_end|>", "Fifty dollars, kind regards.<|im_end|>"]
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(example.input_ids) == rendered


def test_generation_prompt_and_user_text_are_masked(tokenizer):
    example = data.sft_example(tokenizer, CONVERSATION[:3], max_length=512)
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert all(label == data.IGNORE for label in example.labels[:prompt_len])
    assert example.labels[prompt_len] == example.input_ids[prompt_len]


def test_truncation_keeps_what_fits_and_drops_examples_with_nothing_to_learn(tokenizer):
    full = data.sft_example(tokenizer, CONVERSATION, max_length=512)
    cut = data.sft_example(tokenizer, CONVERSATION, max_length=len(full.input_ids) - 3)
    assert cut.input_ids == full.input_ids[:-3] and cut.target_tokens < full.target_tokens
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert data.sft_example(tokenizer, CONVERSATION, max_length=prompt_len) is None
    assert data.sft_example(tokenizer, CONVERSATION, max_length=prompt_len + 1).target_tokens == 1


def _write(tmp_path, lines):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, phrase", [
    ("{not json", "line 2: not JSON"),
    (json.dumps({"messages": []}), "non-empty list"),
    (json.dumps({"turns": CONVERSATION}), "non-empty list"),
    (json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "role"),
    (json.dumps({"messages": [{"role": "user", "content": 3}]}), "content"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "no assistant turn"),
    (json.dumps({"messages": CONVERSATION[2:]}), "first message"),
])
def test_bad_chat_jsonl_is_refused_naming_the_line(tmp_path, line, phrase):
    good = json.dumps({"messages": CONVERSATION})
    with pytest.raises(InvalidInput) as info:
        data.load_chat_jsonl(_write(tmp_path, [good, line]))
    assert phrase in info.value.message and info.value.param == "sft"


def test_chat_jsonl_loads_and_skips_blank_lines(tmp_path):
    good = json.dumps({"messages": CONVERSATION})
    assert data.load_chat_jsonl(_write(tmp_path, [good, "", good])) == [CONVERSATION] * 2
    with pytest.raises(InvalidInput):
        data.load_chat_jsonl(tmp_path / "missing.jsonl")


def test_holdout_split_is_deterministic_and_never_empties_training():
    items = list(range(20))
    train, held = data.split_holdout(items, 0.1, seed=3)
    assert (train, held) == data.split_holdout(items, 0.1, seed=3)
    assert len(held) == 2 and sorted(train + held) == items
    assert data.split_holdout([1, 2], 0.9, seed=0)[0] != []
    assert data.split_holdout([1], 0.5, seed=0) == ([1], [])
    assert data.split_holdout(items, 0.0, seed=0)[1] == []


def test_text_blocks_pack_every_token_as_a_target(tokenizer):
    texts = ["The quick brown fox jumps over the lazy dog."] * 10
    blocks = data.text_blocks(tokenizer, texts, block_size=16)
    assert all(len(b.input_ids) == 16 for b in blocks[:-1]) and len(blocks[-1].input_ids) <= 16
    assert all(b.labels == b.input_ids for b in blocks)
    stream = [t for b in blocks for t in b.input_ids]
    assert stream.count(tokenizer.eos_token_id) == 10


def test_batches_resume_where_an_uninterrupted_run_would_be():
    examples = [data.Example([i, i], [i, i]) for i in range(7)]
    full = [(s, [e.input_ids[0] for e in b]) for s, b in data.batches(examples, 3, 9, seed=1)]
    tail = [(s, [e.input_ids[0] for e in b]) for s, b in data.batches(examples, 3, 9, seed=1,
                                                                        start_step=4)]
    assert tail == full[4:] and len(full) == 9
    first_epoch = [i for _, b in full for i in b][:7]
    assert sorted(first_epoch) == list(range(7))  # every example once per epoch


def test_collate_pads_right_and_masks_padding():
    batch = data.collate([data.Example([5, 6, 7], [-100, 6, 7]), data.Example([8], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("values, param", [
    ({"name": "Bad Name", "conversations": [CONVERSATION]}, "name"),
    ({"name": "ok"}, None),
    ({"name": "ok", "kind": "domain", "sft_file": "x.jsonl"}, None),
    ({"name": "ok", "conversations": [CONVERSATION], "rank": 0}, "rank"),
    ({"name": "ok", "conversations": [CONVERSATION], "marker": "(unclosed"}, "marker"),
    ({"name": "ok", "conversations": [CONVERSATION], "bogus": 1}, "bogus"),
    ({"name": "ok", "kind": "rlhf", "texts": ["x"]}, "kind"),
])
def test_bad_specs_are_refused_naming_the_field(values, param):
    with pytest.raises(InvalidInput) as info:
        TrainSpec.parse(**values)
    assert info.value.param == param


def test_spec_defaults():
    spec = TrainSpec.parse(name="voice", conversations=[CONVERSATION])
    assert spec.rank == 8 and spec.lora_alpha == 16 and spec.targets == ("q_proj", "v_proj")
    assert spec.warmup == 10 and TrainSpec.parse(name="x", kind="domain", steps=5).warmup == 0
    assert spec.kind is TrainingKind.SFT
    assert TrainSpec.parse(name="x", kind="domain").model_dump(mode="json")["kind"] == "domain"
