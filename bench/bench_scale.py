"""Scale: 1,000 tenants, each with its own index and its own registered adapter.

Set-up: every tenant gets ``chunks`` chunks (10 documents; real corpus text, random
unit vectors, written through its chunk store) and a brand whose adapter is one of 8
random LoRAs on the tiny model, registered for that tenant (so 1,000 adapter
versions with distinct ids: vLLM treats each as its own adapter). Configured caches:
``retrieval.index.cache_tenants`` (64) tenant indexes in memory, vLLM ``max_loras``
(4) adapters active and ``max_cpu_loras`` (16) in host memory.

Then every tenant is touched once in turn: its first search (a cold tenant: index not
in memory) and a second one (warm). Then 200 tenants spread over the 1,000 get their
first chat (cold: adapter never loaded in vLLM, index evicted meanwhile), and every
10th of those a second chat (warm); 200 distinct adapters cycle through vLLM's caches
of 4 and 16 many times over (all 1,000 would take over an hour on two shared cores). Resident memory (RSS of this
process and vLLM's engine process) is sampled as tenants are touched: once the caches
are full it must stay flat. Bars: RSS after all tenants <= 1.10 x RSS when the caches
had just filled; and the memory the tenant index cache holds (lorag's process RSS after
gc and malloc_trim, over what it was before the first index loaded) after all tenants
<= 1.10 x what it held once its slots had filled (what a cached index costs is
measured, not the cache's own count of its entries).

Last, vLLM's engine process under adapter churn: 1,000 generations (120 at ``--tiny``),
each with the next tenant's adapter, so every one is a cold load through
``max_cpu_loras`` (16; 4 at ``--tiny``), with corpus prompts of 50-100 words. Bar: the
engine processes' RSS after all of them <= 1.05 x after the first 100 (20), with the
least-squares trend between the samples and its 95% interval.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import corpus, models
from bench.common import BenchResult, Options, latency_summary, main, progress
from lorag.core.modes import RetrievalMode

GROWTH_BAR = 1.10
LOADS_BAR = 1.05  # vLLM's engine RSS after all cold adapter loads / after the first ones
KV_CACHE_MIB = 256
WARM_EVERY = 10  # a second (warm) chat for every 10th tenant: the comparison, at a tenth of the cost
QUESTION = "How do I open a file and read it line by line?"


def run(opts: Options) -> BenchResult:
    return asyncio.run(_run(opts))


async def _run(opts: Options) -> BenchResult:
    import torch

    torch.set_num_threads(1)  # query embeddings on one thread, as in bench_retrieval
    result = BenchResult("scale")
    tenants = opts.pick(1000, 150, 12)
    chatting = opts.pick(200, 50, 12)
    chunks = opts.pick(100, 100, 100)
    caches = opts.pick((64, 4, 16), (32, 4, 16), (4, 2, 4))
    with tempfile.TemporaryDirectory(prefix="lorag-bench-scale-") as tmp:
        app = _app(Path(tmp), *caches)
        started = time.perf_counter()
        _populate(app, tenants, chunks)
        result.metrics["setup_s"] = round(time.perf_counter() - started, 1)
        await app.engine.warm_up()
        memory = _Memory()
        search = _touch_searches(app, tenants, memory, caches[0])
        chat = await _touch_chats(app, tenants, chatting, memory)
        loads = await _cold_loads(app, tenants, opts.pick(1000, 1000, 120), opts.pick(100, 100, 20))
        await app.engine.shutdown()
        app.close()
    _report(result, tenants, chunks, caches, search, chat, memory)
    _cold_loads_bar(result, loads, caches)
    return result


def _app(root: Path, cache_tenants: int, max_loras: int, max_cpu_loras: int):
    from adapters.settings import EngineSettings
    from lorag.app.settings import Settings
    from lorag.app.container import Lorag
    from retrieval.settings import IndexSettings, RetrievalSettings

    engine = EngineSettings(model=str(models.model_path("tiny")), max_model_len=1024,
                            max_loras=max_loras, max_cpu_loras=max_cpu_loras, max_lora_rank=16,
                            kv_cache_bytes=KV_CACHE_MIB * 2**20)
    retrieval = RetrievalSettings(index=IndexSettings(cache_tenants=cache_tenants))
    return Lorag(Settings(data_dir=root / "data", environment="test", engine=engine,
                          retrieval=retrieval))


def _populate(app, tenants: int, chunks: int) -> None:
    from retrieval.types import ChunkWrite, DocumentWrite

    texts = _texts(chunks * 4)
    loras = models.loras("tiny", 8)
    dimension, name = app.embedder.dimension, app.embedder.name
    rng = np.random.default_rng(0)
    for t in range(tenants):
        tenant = f"t{t:04d}"
        app.tenants.create(tenant)
        vectors = rng.standard_normal((chunks, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        per_doc = max(1, chunks // 10)
        writes = []
        for d in range(0, chunks, per_doc):
            part = [texts[(t * 7 + i) % len(texts)] for i in range(d, min(d + per_doc, chunks))]
            writes.append(DocumentWrite(
                id=f"doc{d // per_doc}", title=None, source=None, metadata={},
                content_hash=f"{t}-{d}", characters=sum(map(len, part)),
                chunks=[ChunkWrite(i, x, 0, len(x), len(x.split())) for i, x in enumerate(part)],
                vectors=vectors[d:d + len(part)]))
        handle = app.retrieval.tenant_index(tenant)
        handle.store.write(writes, embedder=name, dimension=dimension)
        handle.sync()
        handle.save()
        app.adapters.register(tenant, "voice", loras[t % len(loras)])
        app.brands.create(tenant, "support", adapter="voice", top_k=2)
        if (t + 1) % _every(tenants) == 0:
            _progress(f"set up {t + 1}/{tenants} tenants")
    for tenant in app.retrieval.loaded_tenants():  # start with nothing in memory
        app.retrieval.forget(tenant)


def _texts(n: int) -> list[str]:
    files, _ = corpus.corpus_files(40)
    words = re.sub(r"\s+", " ", " ".join(p.read_text(errors="replace") for p in files)).split()
    return [" ".join(words[i:i + 50]) for i in range(0, min(len(words), n * 50), 50)]


class _Memory:
    """RSS samples (MiB) of this process and vLLM's engine-core children."""

    def __init__(self):
        self.samples: list[tuple[str, int, float, float]] = []

    def sample(self, phase: str, touched: int) -> None:
        import psutil

        me = psutil.Process()
        children = sum(c.memory_info().rss for c in me.children(recursive=True)
                       if c.is_running()) / 2**20
        self.samples.append((phase, touched, me.memory_info().rss / 2**20, children))


    def last(self) -> float:
        return self.samples[-1][2] + self.samples[-1][3]


def _progress(text: str) -> None:
    progress("scale", text)


def _every(tenants: int) -> int:
    return max(1, tenants // 25)


def _held_mib() -> float:
    """This process's resident memory, MiB, after returning freed memory to the system
    (gc, then glibc's malloc_trim), so that what is counted is what is still held."""
    import ctypes
    import gc

    import psutil

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS as it is
        pass
    return psutil.Process().memory_info().rss / 2**20


def _touch_searches(app, tenants: int, memory: _Memory, cache_tenants: int) -> dict:
    cold, warm, loaded_max = [], [], 0
    app.embedder.embed_query(QUESTION)  # the query model's memory is not the cache's
    held = {"empty": _held_mib()}
    memory.sample("search", 0)
    for t in range(tenants):
        tenant = f"t{t:04d}"
        for bucket in (cold, warm):
            started = time.perf_counter()
            app.retrieval.search(tenant, QUESTION, k=5, mode=RetrievalMode.DENSE)
            bucket.append(time.perf_counter() - started)
        loaded_max = max(loaded_max, len(app.retrieval.loaded_tenants()))
        if t + 1 == cache_tenants:
            held["full"] = _held_mib()
        if (t + 1) % _every(tenants) == 0 or t + 1 == cache_tenants:
            memory.sample("search", t + 1)
            _progress(f"searched {t + 1}/{tenants} tenants, RSS {memory.last():.0f} MiB")
    held["end"] = _held_mib()
    return {"cold": latency_summary(cold), "warm": latency_summary(warm),
            "loaded_max": loaded_max, "held_mib": held}


async def _touch_chats(app, tenants: int, chatting: int, memory: _Memory) -> dict:
    """The first chat of ``chatting`` tenants spread over all of them (every one cold: its
    index was evicted by the search phase, its adapter never loaded), and a second
    (warm) chat for every ``WARM_EVERY``-th of those."""
    from lorag.app.chat import ChatRequest

    cold, warm = [], []
    memory.sample("chat", 0)
    message = ({"role": "user", "content": QUESTION},)
    chosen = list(range(0, tenants, max(1, tenants // chatting)))[:chatting]
    for n, t in enumerate(chosen, start=1):
        tenant = f"t{t:04d}"
        for bucket in (cold, warm) if n % WARM_EVERY == 1 else (cold,):
            started = time.perf_counter()
            await app.chat.complete(tenant, ChatRequest("support", message, max_tokens=8,
                                                        temperature=0.0))
            bucket.append(time.perf_counter() - started)
        if n % _every(len(chosen)) == 0:
            memory.sample("chat", n)
            _progress(f"chatted with {n}/{len(chosen)} tenants, RSS {memory.last():.0f} MiB")
    return {"cold": latency_summary(cold), "warm": latency_summary(warm),
            "tenants": len(chosen), "loaded_max": len(app.retrieval.loaded_tenants())}


def _engine_mib() -> float:
    """Resident memory of vLLM's engine processes (this process's children), MiB."""
    import psutil

    return sum(c.memory_info().rss for c in psutil.Process().children(recursive=True)
               if c.is_running()) / 2**20


async def _cold_loads(app, tenants: int, loads: int, first: int) -> dict:
    """``loads`` generations (8 tokens), each with the next tenant's adapter in turn: a
    tenant comes round again only after all others, so with more tenants than
    ``max_cpu_loras`` every one is a cold load (vLLM reads the adapter from disk into its
    host cache, evicting another). vLLM's engine RSS is sampled after the first ``first``
    loads (the baseline: caches full, allocator warm) and every ``first`` after."""
    from adapters.engines.protocol import GenerationRequest, Sampling

    texts, rng = _texts(400), np.random.default_rng(1)
    samples, started = [], time.perf_counter()
    for n in range(1, loads + 1):
        ref = app.adapters.resolve(f"t{(n - 1) % tenants:04d}", "voice")
        # prompts of 50-100 words (250-550 tokens of the tiny model), as a chat with sources sends
        prompt = " ".join(texts[i] for i in rng.integers(0, len(texts), rng.integers(1, 3)))
        async for _ in app.engine.generate(GenerationRequest(
                f"cold-load-{n}", prompt=prompt, sampling=Sampling(max_tokens=8), adapter=ref)):
            pass
        if n % first == 0:
            samples.append((n, _engine_mib()))
            _progress(f"{n}/{loads} cold adapter loads, engine RSS {samples[-1][1]:.0f} MiB")
    return {"loads": loads, "first": first, "samples": samples,
            "seconds_per_load": (time.perf_counter() - started) / loads}


def _cold_loads_bar(result: BenchResult, loads: dict, caches) -> None:
    """Engine RSS after all loads over after the first ones, and the trend between them
    (least-squares slope with its 95% interval, MiB per 100 loads): a single run, since
    the baseline sample and the last are what the bar compares."""
    from bench.stats import t95

    samples = loads["samples"]
    (first_n, first), (end_n, end) = samples[0], samples[-1]
    fit = _slope(samples) if len(samples) >= 3 else None
    slope = "" if fit is None else (
        f"; trend {fit[0] * 100:+.2f} MiB per 100 loads (95% interval "
        f"{(fit[0] - t95(len(samples) - 2) * fit[1]) * 100:+.2f} to "
        f"{(fit[0] + t95(len(samples) - 2) * fit[1]) * 100:+.2f})")
    ratio = end / first
    result.metrics["cold_loads"] = {
        "loads": loads["loads"], "max_cpu_loras": caches[2],
        "engine_rss_mb": [[n, round(m, 1)] for n, m in samples],
        "seconds_per_load": round(loads["seconds_per_load"], 4),
        "slope_mib_per_100": None if fit is None else round(fit[0] * 100, 3)}
    result.bar("scale.engine_cold_loads", f"vLLM engine RSS after {end_n:,} cold adapter loads "
               f"(max_cpu_loras {caches[2]}) / after the first {first_n}", round(ratio, 3), "<=",
               LOADS_BAR, why=f"{first:.0f} MiB -> {end:.0f} MiB ({end - first:+.1f} MiB){slope}; "
                             f"{loads['seconds_per_load'] * 1000:.0f} ms per load",
               to_meet="" if ratio <= LOADS_BAR else
               "the engine's growth under varied prompts was oneDNN's primitive cache (a "
               "primitive per matrix shape): a smaller engine.onednn_cache bounds it; "
               "otherwise find what each load leaves in the engine process")


def _slope(samples: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares slope of memory over loads (MiB per load) and its standard error."""
    x = np.array([n for n, _ in samples], dtype=float)
    y = np.array([m for _, m in samples])
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    spread = float(np.sqrt((residuals ** 2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum()))
    return float(slope), spread


def _report(result, tenants, chunks, caches, search, chat, memory: _Memory) -> None:
    cache_tenants, max_loras, max_cpu_loras = caches
    totals = [(phase, n, me + kids) for phase, n, me, kids in memory.samples]
    at_full = next(i for i, (phase, n, _) in enumerate(totals)
                   if phase == "search" and n >= cache_tenants)
    full = totals[at_full][2]
    lorag_growth = memory.samples[-1][2] - memory.samples[at_full][2]
    engine_growth = memory.samples[-1][3] - memory.samples[at_full][3]
    search_end = [total for phase, n, total in totals if phase == "search"][-1]
    end = totals[-1][2]
    growth = end / full
    result.metrics.update({
        "tenants": tenants, "chunks_per_tenant": chunks, "cache_tenants": cache_tenants,
        "max_loras": max_loras, "max_cpu_loras": max_cpu_loras,
        "rss_when_caches_full_mb": round(full, 1), "rss_after_searches_mb": round(search_end, 1),
        "rss_at_end_mb": round(end, 1),
        "rss_growth": round(growth, 3), "loaded_indexes_max": search["loaded_max"],
        "search": search, "chat": chat,
        "memory_samples": [[p, n, round(a, 1), round(b, 1)] for p, n, a, b in memory.samples]})
    result.bar("scale.memory_within_caches",
               f"RSS after searching all {tenants:,} tenants and chatting with {chat['tenants']} / RSS when "
               f"the {cache_tenants} cached indexes had filled", round(growth, 3), "<=",
               GROWTH_BAR, why=f"{full:.0f} MiB -> {search_end:.0f} MiB after the searches -> "
               f"{end:.0f} MiB after the chats (lorag process + vLLM engine "
               f"process): lorag's process {lorag_growth:+.0f} MiB, vLLM's engine process "
               f"{engine_growth:+.0f} MiB; at most {search['loaded_max']} indexes in memory "
               f"(cache_tenants={cache_tenants})",
               to_meet="" if growth <= GROWTH_BAR else _memory_advice(lorag_growth, engine_growth))
    _index_cache_bar(result, tenants, cache_tenants, search)
    rows = [[what, *_ms(search[k] if what.startswith("search") else chat[k])]
            for what, k in (("search, first (cold tenant)", "cold"), ("search, second (warm)", "warm"),
                            ("chat, first (cold tenant and adapter)", "cold"),
                            ("chat, second (warm)", "warm"))]
    result.table(f"{tenants:,} tenants x {chunks} chunks, an adapter each (tiny model); all of "
                 f"them searched, {chat['tenants']} of them (spread evenly) chatted with; caches: "
                 f"{cache_tenants} indexes, vLLM max_loras {max_loras}, max_cpu_loras "
                 f"{max_cpu_loras}. Latency in ms (chat: 8 tokens, retrieval on, top 2 sources)",
                 ["request", "p50", "p99", "mean"], rows)
    steps = [n if phase == "search" else tenants + n for phase, n, _, _ in memory.samples]
    result.figure("scale_memory.png", f"Resident memory: {tenants:,} tenants searched, then "
                  f"{chat['tenants']} chatted with", "requests' tenants so far (searches, then chats)",
                  "RSS, MiB", [{"label": "lorag process", "x": steps,
                                "y": [s[2] for s in memory.samples]},
                               {"label": "vLLM engine process", "x": steps,
                                "y": [s[3] for s in memory.samples]}])
    result.notes.append(
        f"Query embeddings run on one torch thread (as in the retrieval benchmark: two "
        f"threads on a shared two-core machine swing latency by 10x). "
        f"Vectors are random (the latency of a search does not depend on them); texts are "
        f"corpus windows. RSS counts this process and its children (vLLM's engine core). "
        f"The chat phase starts after the search phase, so its first tenants' indexes are "
        f"already evicted: every first chat is cold for both the index and the adapter.")


def _index_cache_bar(result: BenchResult, tenants: int, cache_tenants: int, search: dict) -> None:
    """Memory the tenant index cache holds, measured (lorag's process, after gc and
    malloc_trim): what the first ``cache_tenants`` indexes added is what one full cache
    holds; after all ``tenants`` were searched the cache must hold no more than that."""
    held = search["held_mib"]
    full, end = held["full"] - held["empty"], held["end"] - held["empty"]
    per_index = full / cache_tenants
    result.metrics.update({"index_cache_mib_full": round(full, 2),
                           "index_cache_mib_end": round(end, 2),
                           "mib_per_cached_index": round(per_index, 3)})
    description = (f"memory the index cache holds after searching all {tenants:,} tenants / "
                   f"what it held once its {cache_tenants} slots had filled")
    if full <= 0:
        result.bar("scale.index_cache_memory", description, None, "<=", GROWTH_BAR,
                   why=f"filling the cache added {full:+.2f} MiB: below what RSS resolves")
        return
    ratio = end / full
    result.bar("scale.index_cache_memory", description, round(ratio, 3), "<=", GROWTH_BAR,
               why=f"{per_index:.2f} MiB per cached index ({full:.1f} MiB for {cache_tenants}); "
                   f"{end:.1f} MiB after {tenants:,} tenants (at most {search['loaded_max']} "
                   "indexes loaded at once); lorag's process after gc and malloc_trim",
               to_meet="" if ratio <= GROWTH_BAR else
               "find what an evicted index leaves behind (its store's connection, the FAISS "
               "index held by another reference) and release it on eviction")


def _memory_advice(lorag_growth: float, engine_growth: float) -> str:
    if engine_growth > lorag_growth:
        return (f"most of the growth is in vLLM's engine process ({engine_growth:+.0f} MiB, "
                f"lorag's own process {lorag_growth:+.0f} MiB): oneDNN's primitive cache "
                "there grows with every new prompt length (not the KV cache, which is zeroed "
                "at start); a smaller engine.onednn_cache bounds it")
    return ("find what is kept per tenant outside the caches (open SQLite connections, "
            "per-adapter state in the engine) and bound it")


def _ms(summary: dict) -> list[str]:
    return [f"{summary['p50_ms']:.1f}", f"{summary['p99_ms']:.1f}", f"{summary['mean_ms']:.1f}"]


if __name__ == "__main__":
    raise SystemExit(main(run))
