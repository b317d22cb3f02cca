import json

from safetensors import safe_open

from lorag.testing.tiny_model import build_tiny_model


def test_tiny_model_is_built_once_and_has_chatml(tiny_model):
    assert build_tiny_model(tiny_model) == tiny_model  # reused, not rebuilt
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"


def test_lora_factory_makes_nonzero_b(tiny_lora_factory):
    folder = tiny_lora_factory(seed=1)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8
    with safe_open(folder / "adapter_model.safetensors", "pt") as f:
        b = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]
    assert b and all(t.abs().sum() > 0 for t in b)
    assert tiny_lora_factory(seed=1) == folder
