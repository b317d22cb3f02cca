"""vLLM with LoRA on some modules only (``engine.lora_target_modules``): an adapter on
those modules generates exactly what the PEFT reference generates, as with every module
wrapped (test_engine_vllm.py)."""

import pytest

from adapters.engines import build_engine
from adapters.settings import EngineSettings
from lorag.testing.engine_conformance import collect, request, start_stack

pytest.importorskip("vllm")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model, tiny_lora_factory):
    stack = start_stack("vllm", tmp_path_factory.mktemp("vllm-targets") / "data", tiny_model,
                        tiny_lora_factory, lora_target_modules=["q_proj", "v_proj"])
    yield stack
    stack.close()


def test_adapters_on_the_wrapped_modules_agree_with_the_peft_reference(stack, tiny_model,
                                                                      tmp_path_factory):
    kit = stack.kit
    oracle = build_engine(EngineSettings(backend="peft", model=str(tiny_model), max_model_len=512),
                          model=str(tiny_model), work_dir=tmp_path_factory.mktemp("oracle-targets"))
    kit.run(oracle.warm_up())
    try:
        for ref in (None, kit.refs["a"], kit.refs["b"]):
            ours = kit.run(collect(kit.engine, request(ref, max_tokens=24)))
            reference = kit.run(collect(oracle, request(ref, max_tokens=24)))
            assert ours.tokens == reference.tokens, ref and ref.name
    finally:
        kit.run(oracle.shutdown())
