"""vLLM's engine process stays flat under adapter churn (bench/bench_scale.py measures it at
1,000 cold loads; this is the same check at a small size).

The engine runs in its own process, as ``lorag serve`` runs it (the other engine tests run
it in-process, where the test's own allocations would be counted too). With
``max_cpu_loras`` 2 and a new adapter id for every request, every request is a cold
load: vLLM reads the adapter from disk and evicts another from its host cache.
"""

import asyncio

import psutil
import pytest

from adapters.engines import build_engine
from adapters.engines.protocol import AdapterRef
from adapters.settings import EngineSettings
from lorag.testing.engine_conformance import collect, request

pytest.importorskip("vllm")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARM_LOADS, LOADS = 30, 150
# The bench's bar is 5% over 900 loads; over 150 the same leak shows at a third of that.
# Measured with varied prompts: +0.6% from 50 to 200 loads with engine.onednn_cache 64,
# +4.3% from 100 to 300 with oneDNN's default of 1,024.
GROWTH = 1.02
WORDS = "the quick brown fox reads a file line by line and writes it back".split()


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_model):
    patch = pytest.MonkeyPatch()  # tests run vLLM in-process (conftest); this one must not
    patch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    settings = EngineSettings(model=str(tiny_model), max_model_len=512, max_loras=1,
                              max_cpu_loras=2, max_lora_rank=16, kv_cache_bytes=64 * 2**20,
                              max_num_seqs=4, engine_process=True)
    built = build_engine(settings, model=str(tiny_model),
                         work_dir=tmp_path_factory.mktemp("engine-memory"))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(built.warm_up())
        yield built, loop
    finally:
        loop.run_until_complete(built.shutdown())
        loop.close()
        patch.undo()


def engine_rss_mib() -> float:
    """Resident memory of this process's children (vLLM's engine core and its worker)."""
    return sum(c.memory_info().rss for c in psutil.Process().children(recursive=True)
               if c.is_running()) / 2**20


def test_engine_rss_stays_flat_over_cold_adapter_loads(engine, tiny_lora_factory):
    built, loop = engine
    loras = [tiny_lora_factory(seed=seed) for seed in (1, 2, 3, 4)]
    assert engine_rss_mib() > 100  # the engine really is a child process

    def cold_loads(start: int, count: int) -> None:
        for n in range(start, start + count):
            ref = AdapterRef("acme", "voice", n, 70_000 + n, loras[n % len(loras)])
            prompt = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(8 + n % 120))
            result = loop.run_until_complete(collect(built, request(ref, prompt=prompt,
                                                                    max_tokens=4)))
            assert result.completion_tokens >= 1

    cold_loads(0, WARM_LOADS)
    first = engine_rss_mib()
    cold_loads(WARM_LOADS, LOADS)
    end = engine_rss_mib()
    assert built.stats()["adapter_loads"] == WARM_LOADS + LOADS  # every one a new adapter
    assert end <= first * GROWTH, f"engine RSS {first:.0f} MiB -> {end:.0f} MiB over {LOADS} loads"
