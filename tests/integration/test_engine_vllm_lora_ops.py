"""vLLM's CPU LoRA op paths (``engine.lora_ops``, adapters/engines/vllm_cpu_fix.py) on
the real engine and the tiny model: greedy answers of a batch mixing the base model and
four adapters are the same with the batched path forced (prefill and decode steps) as on
the grouped path (the batched path off, the ops lorag had before), and the same as each
request alone.

vLLM's AsyncLLM runs its engine core in a process of its own, where the plugin installs
the ops with the path the engine passed on (``vllm_cpu_fix.PATH_ENV``): one engine per
path. Which path auto takes for which batch is unit-tested
(tests/unit/test_adapter_vllm_cpu_fix.py); auto is the path every other vLLM test runs.
"""

import asyncio

import pytest

from adapters.settings import LoraOpPath
from lorag.testing.engine_conformance import collect, request, start_stack

pytest.importorskip("vllm")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = (None, "a", "b", "c", "d")  # None = the base model (LoRA index -1)


def _answers(stack) -> tuple[list[list[int]], list[list[int]]]:
    """(tokens of each request run alone, tokens of each when all run at once)."""
    kit = stack.kit
    refs = [kit.refs[n] if n else None for n in NAMES]

    async def together():
        return await asyncio.gather(*(collect(kit.engine, request(ref, max_tokens=12)) for ref in refs))

    alone = [kit.run(collect(kit.engine, request(ref, max_tokens=12))).tokens for ref in refs]
    batch = [r.tokens for r in kit.run(together())]  # adapters loaded: all start at once
    return alone, batch


@pytest.fixture(scope="module")
def answers(tmp_path_factory, tiny_model, tiny_lora_factory):
    found = {}
    for path in (LoraOpPath.GROUPED, LoraOpPath.BATCHED):
        stack = start_stack("vllm", tmp_path_factory.mktemp(f"lora-ops-{path.value}") / "data",
                            tiny_model, tiny_lora_factory, max_loras=4, max_cpu_loras=4,
                            lora_ops=path)
        try:
            for name, seed in (("c", 3), ("d", 4)):
                stack.kit.refs[name] = stack.app.adapters.register(
                    "acme", name, tiny_lora_factory(seed=seed)).ref()
            found[path] = _answers(stack)
        finally:
            stack.close()
    return found


def test_the_batched_path_gives_the_grouped_paths_greedy_answers(answers):
    alone, batch = answers[LoraOpPath.GROUPED]
    assert batch == alone  # batching changes no answer
    assert len({tuple(t) for t in alone}) == len(NAMES)  # each adapter its own answer
    assert answers[LoraOpPath.BATCHED] == (alone, batch)
