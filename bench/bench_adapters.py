"""Adapter benchmark on the real vLLM engine: cold-load latency and multi-adapter throughput.

Measured in one run, on one engine:

1. cold-load latency: the first request with a newly registered adapter (vLLM loads it
   from lorag's store) against the same request once the adapter is warm, and against
   the base model; 1-token requests, so the load dominates;
2. generation throughput (tokens/s) of a batch of concurrent requests spread round-robin
   over 1, 4, 16 and 32 distinct adapters (``max_loras`` 32, at least the adapters in
   flight, so vLLM's scheduler never holds a request back for a slot; ``--max-loras`` to
   change it) against the same batch on the base model alone (bar: each at least 0.8x).
   Rounds alternate the order of the configurations so a noisy machine's drift hits all
   alike. The engine's CPU LoRA op path is ``engine.lora_ops`` (default auto, chosen per
   batch; ``--lora-ops grouped`` measures the path without batching).

The adapters are random LoRAs (rank 8 on q_proj, v_proj) made for the model; the engine
applies LoRA to those modules only (``engine.lora_target_modules``), as a deployment whose
adapters all target them would configure it. The model is
SmolLM2-135M-Instruct (prepared once in the default data dir) in full and ``--quick``
runs, the tiny random model with ``--tiny``; ``--model PATH`` takes any HF folder.

    .venv/bin/python -m bench.bench_adapters --quick --out /tmp/adapters.json
    .venv/bin/python -m bench.run --only adapters          # into bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO_DIR, BenchResult, Options
from bench.common import main as bench_main
from bench.stats import rounds_interval

QUESTION = ({"role": "user", "content": "Tell me about the opening hours of the store."},)
CONFIGS = {"base model": 0, "1 adapter": 1, "4 adapters": 4, "16 adapters": 16, "32 adapters": 32}
ADAPTERS = max(CONFIGS.values())
MAX_LORAS = ADAPTERS  # the bar asks for max_loras of at least the adapters in flight
BAR = 0.8
TARGETS = ("q_proj", "v_proj")  # the adapters' modules; the engine wraps only these
_ids = itertools.count()


def sizes(opts: Options, model: str | None, max_loras: int = MAX_LORAS,
          lora_ops: str = "auto") -> dict:
    size = opts.pick(
        full=dict(model="smollm2", requests=32, max_tokens=32, rounds=14, cold=5),
        quick=dict(model="smollm2", requests=32, max_tokens=16, rounds=4, cold=2),
        tiny=dict(model="tiny", requests=8, max_tokens=8, rounds=2, cold=2))
    return {**size, "model": model or size["model"], "max_loras": max_loras,
            "max_cpu_loras": max(max_loras, 16), "lora_target_modules": list(TARGETS),
            "lora_ops": lora_ops}


def model_path(name: str) -> str:
    if name == "tiny":
        from lorag.testing.tiny_model import build_tiny_model

        return str(build_tiny_model(REPO_DIR / ".cache" / "bench-tiny-model"))
    if name == "smollm2":  # prepared once in the default data dir, shared with lorag serve
        from adapters.models import default_model_path
        from lorag.app.settings import Settings
        from lorag.core.layout import Layout

        return str(default_model_path(Layout(Settings().data_dir)))
    return name


def build_app(size: dict, work: Path):
    from adapters.settings import EngineSettings
    from lorag.app.settings import Settings
    from lorag.app.container import Lorag

    engine = EngineSettings(backend="vllm", model=model_path(size["model"]), max_model_len=1024,
                            max_loras=size["max_loras"], max_cpu_loras=size["max_cpu_loras"],
                            max_lora_rank=16, max_num_seqs=max(size["requests"], 16),
                            lora_target_modules=size["lora_target_modules"],
                            lora_ops=size.get("lora_ops", "auto"),
                            kv_cache_bytes=512 * 2**20)
    app = Lorag(Settings(data_dir=work / "data", environment="test", engine=engine))
    app.tenants.create("bench")
    return app


def register_adapters(app, count: int, work: Path) -> list:
    """``count`` random rank-8 LoRAs: one made with PEFT, the others by re-drawing its
    tensors (same names and shapes), so the model is loaded once."""
    import torch
    from safetensors.torch import load_file, save_file

    from lorag.testing.tiny_model import make_lora

    first = make_lora(Path(app.base_model_path), work / "loras" / "a0", seed=100, targets=TARGETS)
    tensors = load_file(first / "adapter_model.safetensors")
    refs = [app.adapters.register("bench", "a0", first).ref()]
    for i in range(1, count):
        folder = work / "loras" / f"a{i}"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text((first / "adapter_config.json").read_text())
        gen = torch.Generator().manual_seed(100 + i)
        save_file({name: torch.randn(t.shape, generator=gen) * t.std() for name, t in tensors.items()},
                  folder / "adapter_model.safetensors")
        refs.append(app.adapters.register("bench", f"a{i}", folder).ref())
    return refs


async def one(engine, adapter, max_tokens: int) -> int:
    from adapters.engines.protocol import GenerationRequest, Sampling

    request = GenerationRequest(f"bench-{next(_ids)}", messages=QUESTION,
                                sampling=Sampling(max_tokens=max_tokens), adapter=adapter)
    tokens = 0
    async for chunk in engine.generate(request):
        tokens += len(chunk.token_ids)
    return tokens


async def timed_one(engine, adapter) -> float:
    started = time.perf_counter()
    await one(engine, adapter, 1)
    return time.perf_counter() - started


async def cold_load(engine, refs: list) -> dict:
    """Median ms of a 1-token request: adapter cold (first use), warm, and base model."""
    cold, warm, base = [], [], []
    for ref in refs:
        base.append(await timed_one(engine, None))
        cold.append(await timed_one(engine, ref))
        warm.append(await timed_one(engine, ref))
    return {name: round(statistics.median(v) * 1e3, 2) for name, v in
            (("cold_ms", cold), ("warm_ms", warm), ("base_ms", base))}


def cpu_seconds() -> float:
    """CPU time of this process and its children (vLLM's engine core), from /proc: on a
    shared machine, tokens per CPU-second hold where tokens per wall second drift."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, total = {os.getpid()}, 0
    for pid, (parent, _) in sorted(stats.items()):  # children have larger pids than parents
        if parent in family:
            family.add(pid)
    for pid in family:
        total += stats.get(pid, (0, 0))[1]
    return total / tick


async def batch(engine, adapters: list, requests: int, max_tokens: int) -> tuple[int, float, float]:
    """(tokens, wall s, CPU s) of ``requests`` concurrent requests round-robin over ``adapters``."""
    chosen = [adapters[i % len(adapters)] for i in range(requests)]
    started, cpu = time.perf_counter(), cpu_seconds()
    counts = await asyncio.gather(*(one(engine, a, max_tokens) for a in chosen))
    return sum(counts), time.perf_counter() - started, cpu_seconds() - cpu


async def throughput(engine, refs: list, size: dict) -> dict[str, dict[str, float]]:
    """tokens per wall second and per CPU second for each configuration, their order
    alternating every round."""
    configs = {name: refs[:n] if n else [None] for name, n in CONFIGS.items()}
    for adapters in configs.values():  # load every adapter once: measure serving, not loading
        await batch(engine, adapters, len(adapters), 1)
    totals = {name: [0, 0.0, 0.0] for name in configs}
    per_round: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(size["rounds"]):
        for name in names if r % 2 == 0 else names[::-1]:
            found = await batch(engine, configs[name], size["requests"], size["max_tokens"])
            totals[name] = [a + b for a, b in zip(totals[name], found)]
            per_round[name].append(found[0] / found[1])
    return {name: {"wall": tokens / wall, "cpu": tokens / max(cpu, 1e-9),
                   "rounds": per_round[name]}
            for name, (tokens, wall, cpu) in totals.items()}


async def measure(app, size: dict, work: Path) -> dict:
    refs = register_adapters(app, ADAPTERS + size["cold"], work)
    await app.engine.warm_up()
    try:
        await one(app.engine, None, 4)
        cold = await cold_load(app.engine, refs[ADAPTERS:])
        speeds = await throughput(app.engine, refs[:ADAPTERS], size)
    finally:
        await app.engine.shutdown()
    return {"cold": cold, "speeds": speeds}


def run(opts: Options, model: str | None = None, max_loras: int = MAX_LORAS,
        lora_ops: str = "auto") -> BenchResult:
    size = sizes(opts, model, max_loras, lora_ops)
    with tempfile.TemporaryDirectory(prefix="lorag-bench-adapters-") as tmp:
        app = build_app(size, Path(tmp))
        try:
            found = asyncio.run(measure(app, size, Path(tmp)))
        finally:
            app.close()
    return result_of(found, size)


def result_of(found: dict, size: dict) -> BenchResult:
    cold, speeds = found["cold"], found["speeds"]
    result = BenchResult("adapters")
    result.metrics.update({**cold, "cold_over_warm": round(cold["cold_ms"] / cold["warm_ms"], 2),
                           "load_cost_ms": round(cold["cold_ms"] - cold["warm_ms"], 2),
                           **{f"setting.{k}": v for k, v in size.items()}})
    for name, speed in speeds.items():
        result.metrics[f"tokens_per_s.{name}"] = round(speed["wall"], 2)
        result.metrics[f"tokens_per_cpu_s.{name}"] = round(speed["cpu"], 2)
    base = speeds["base model"]
    rows = [[name, round(s["wall"], 1), round(s["wall"] / base["wall"], 2), round(s["cpu"], 1),
             round(s["cpu"] / base["cpu"], 2)] for name, s in speeds.items()]
    where = (f"{size['model']}, vLLM, max_loras {size['max_loras']}, LoRA ops "
             f"{size.get('lora_ops', 'auto')}, LoRA on "
             f"{'+'.join(size['lora_target_modules'] or ['every module'])}, {size['requests']} "
             f"concurrent requests x {size['max_tokens']} tokens")
    result.table(f"Throughput with distinct adapters interleaved ({where}, {size['rounds']} rounds)",
                 ["configuration", "tokens/s", "ratio", "tokens/CPU-s", "ratio (CPU)"], rows)
    result.table(f"Adapter cold load, 1-token request, median of {size['cold']} new adapters",
                 ["cold (ms)", "warm (ms)", "base model (ms)", "cold / warm"],
                 [[cold["cold_ms"], cold["warm_ms"], cold["base_ms"], result.metrics["cold_over_warm"]]])
    result.notes.append("Ratios are to the base model alone, measured in the same run with the "
                        "configurations alternating; 'CPU' ratios divide by the CPU time of lorag "
                        "and vLLM's engine process, which drifts less on a shared machine. The bars "
                        "use tokens per wall second.")
    for name, n in list(CONFIGS.items())[1:]:
        # tokens per wall second, round by round against the base model's same round
        interval = rounds_interval(speeds[name]["rounds"], base["rounds"])
        result.ratio_bar(f"adapters.throughput.{n}", f"throughput with {name} interleaved / base "
                         f"model ({where})", interval, ">=", BAR, why=_why(size, n))
    return result


def _why(size: dict, n: int) -> str:
    if size["model"] == "tiny":
        return ("the tiny model's base step is so cheap that the LoRA matmuls dominate; "
                "the bar is meant for a real model")
    why = ("on CPU, LoRA adds small products to each wrapped layer: one per adapter in the "
           "batch on the grouped path, one padded batched product on the batched path "
           f"(engine.lora_ops {size.get('lora_ops', 'auto')})")
    if n > size["max_loras"]:
        why += (f"; vLLM's scheduler admits at most max_loras={size['max_loras']} adapters per "
                f"step, so with {n} adapters most requests wait for a slot (a max_loras of at "
                "least the adapters in flight removes that part)")
    return why


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default=None, help="tiny, smollm2, or an HF model folder")
    extra.add_argument("--max-loras", type=int, default=MAX_LORAS,
                       help="adapters resident in vLLM at once (below 32, 32 adapters swap)")
    extra.add_argument("--lora-ops", default="auto", choices=["auto", "grouped", "batched"],
                       help="engine.lora_ops: vLLM's CPU LoRA op path")
    args, rest = extra.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return bench_main(lambda opts: run(opts, args.model, args.max_loras, args.lora_ops), rest)


if __name__ == "__main__":
    sys.exit(main())
