"""vLLM's engine process stays flat under adapter churn (bench/bench_scale.py measures it at
1,000 cold loads; this is the same check at a small size).

The engine runs in its own process, as ``lorag serve`` runs it (the other engine tests run
it in-process, where the test's own allocations would be counted too). With
``max_cpu_loras`` 2 and a new adapter id for every request, every request is a cold
load: vLLM reads the adapter from disk and evicts another from its host cache. The same
engine shows where its engine core process was placed (``engine.engine_core_cpus``).
"""

import asyncio
import os

import psutil
import pytest

from adapters.engines import build_engine
from adapters.engines.cpu_affinity import MIN_FREE_CPUS, place_engine_core
from adapters.engines.protocol import AdapterRef
from adapters.settings import EngineCoreCpus, EngineSettings
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


def engine_processes() -> tuple[psutil.Process, list[psutil.Process]]:
    children = psutil.Process().children(recursive=True)
    return ([c for c in children if "EngineCore" in c.name()][0],
            [c for c in children if "Worker" in c.name()])


def thread_cpus(process: psutil.Process) -> list[set[int]]:
    return [os.sched_getaffinity(thread.id) for thread in process.threads()]


def test_the_engine_core_shares_the_workers_cores_when_the_machine_has_none_to_spare(engine):
    """engine.engine_core_cpus: auto (the default, applied at warm-up) puts the engine core
    on its worker's cores when fewer than MIN_FREE_CPUS are left outside them; worker
    always does; any leaves it alone."""
    core, workers = engine_processes()
    worker_cpus = set().union(*(cpus for w in workers for cpus in thread_cpus(w)))
    free = set(os.sched_getaffinity(0)) - worker_cpus
    if len(free) < MIN_FREE_CPUS:
        assert all(cpus == worker_cpus for cpus in thread_cpus(core))
    else:
        assert all(cpus == set(os.sched_getaffinity(0)) for cpus in thread_cpus(core))
    assert place_engine_core(EngineCoreCpus.ANY) is None
    assert place_engine_core(EngineCoreCpus.WORKER) == sorted(worker_cpus)
    assert all(cpus == worker_cpus for cpus in thread_cpus(core))
