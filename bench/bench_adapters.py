"""Adapter benchmark on the real vLLM engine: cold-load latency and multi-adapter throughput.

Measured in one run, on one engine:

1. cold-load latency: the first request with a newly registered adapter (vLLM loads it
   from lorag's store) against the same request once the adapter is warm, and against
   the base model; 1-token requests, so the load dominates;
2. generation throughput (tokens/s) of a batch of concurrent requests spread round-robin
   over 1, 4 and 16 distinct adapters (``max_loras`` below 16, so vLLM swaps adapters)
   against the same batch on the base model alone. Rounds alternate the order of the
   configurations so a noisy machine's drift hits all alike; ratios are to the base.

The adapters are random LoRAs (rank 8 on q_proj, v_proj) made for the model.

    .venv/bin/python bench/bench_adapters.py                    # tiny random model, ~1-2 min
    .venv/bin/python bench/bench_adapters.py --model smollm2    # SmolLM2-135M-Instruct (prepared once)
    .venv/bin/python bench/bench_adapters.py --model /path/to/hf-folder --write

``--write`` replaces the "Adapters" section of bench/RESULTS.md with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("TOKENIZERS_PARALLELISM", "false"), ("VLLM_ENABLE_V1_MULTIPROCESSING", "0")):
    os.environ.setdefault(_name, _value)

from bench._common import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Adapters"
QUESTION = ({"role": "user", "content": "Tell me about the opening hours of the store."},)
_ids = itertools.count()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny",
                        help="'tiny' (random tiny Llama), 'smollm2' (prepared SmolLM2-135M), or an HF folder")
    parser.add_argument("--backend", default="vllm", help="registered engine (vllm, peft)")
    parser.add_argument("--requests", type=int, default=32, help="concurrent requests per batch")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--rounds", type=int, default=3, help="batches per configuration")
    parser.add_argument("--cold", type=int, default=5, help="adapters timed for cold load")
    parser.add_argument("--max-loras", type=int, default=4, help="adapters per batch (below 16)")
    parser.add_argument("--max-cpu-loras", type=int, default=16, help="adapters in host memory")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    return parser.parse_args(argv)


def build_app(args: argparse.Namespace, work: Path):
    from adapters.settings import EngineSettings
    from adapters.tiny import build_tiny_model
    from lorag.config import Settings
    from lorag.services import Lorag

    model = {"tiny": lambda: str(build_tiny_model(REPO / ".cache" / "bench-tiny-model")),
             "smollm2": _prepared_smollm2}.get(args.model, lambda: args.model)()
    engine = EngineSettings(backend=args.backend, model=model, max_model_len=1024,
                            max_loras=args.max_loras, max_cpu_loras=args.max_cpu_loras,
                            max_lora_rank=16, max_num_seqs=max(args.requests, 16),
                            kv_cache_bytes=512 * 2**20)
    app = Lorag(Settings(data_dir=work / "data", environment="test", engine=engine))
    app.tenants.create("bench")
    return app


def _prepared_smollm2() -> str:
    """SmolLM2-135M-Instruct prepared in the default data dir (shared with ``lorag serve``)."""
    from adapters.models import default_model_path
    from lorag.config import Settings
    from lorag.layout import Layout

    return str(default_model_path(Layout(Settings().data_dir)))


def register_adapters(app, count: int, work: Path) -> list:
    from adapters.tiny import make_lora

    base = Path(app.base_model_path)
    refs = []
    for i in range(count):
        folder = make_lora(base, work / "loras" / f"a{i}", seed=100 + i)
        refs.append(app.adapters.register("bench", f"a{i}", folder).ref())
    return refs


async def one(engine, adapter, max_tokens: int) -> int:
    from adapters.engine import GenerationRequest, Sampling

    request = GenerationRequest(f"bench-{next(_ids)}", messages=QUESTION,
                                sampling=Sampling(max_tokens=max_tokens), adapter=adapter)
    tokens = 0
    async for chunk in engine.generate(request):
        tokens += len(chunk.token_ids)
    return tokens


async def timed_one(engine, adapter, max_tokens: int = 1) -> float:
    started = time.perf_counter()
    await one(engine, adapter, max_tokens)
    return time.perf_counter() - started


async def cold_load(engine, refs: list) -> dict:
    """Median ms of a 1-token request: adapter cold (first use), warm, and base."""
    cold, warm, base = [], [], []
    for ref in refs:
        base.append(await timed_one(engine, None))
        cold.append(await timed_one(engine, ref))
        warm.append(await timed_one(engine, ref))
    return {name: statistics.median(v) * 1e3 for name, v in
            (("cold_ms", cold), ("warm_ms", warm), ("base_ms", base))}


async def batch(engine, adapters: list, args) -> tuple[int, float]:
    """(tokens, seconds) of ``args.requests`` concurrent requests over ``adapters``."""
    chosen = [adapters[i % len(adapters)] for i in range(args.requests)]
    started = time.perf_counter()
    counts = await asyncio.gather(*(one(engine, a, args.max_tokens) for a in chosen))
    return sum(counts), time.perf_counter() - started


async def throughput(engine, refs: list, args) -> dict[str, float]:
    """tokens/s per configuration, configurations alternating order every round."""
    configs = {"base model": [None], "1 adapter": refs[:1], "4 adapters": refs[:4],
               "16 adapters": refs[:16]}
    for adapters in configs.values():  # load every adapter once: measure serving, not loading
        await batch(engine, adapters, argparse.Namespace(requests=len(adapters), max_tokens=1))
    totals = {name: [0, 0.0] for name in configs}
    names = list(configs)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            tokens, seconds = await batch(engine, configs[name], args)
            totals[name][0] += tokens
            totals[name][1] += seconds
    return {name: tokens / seconds for name, (tokens, seconds) in totals.items()}


async def measure(app, args, work: Path) -> dict:
    refs = register_adapters(app, 16 + args.cold, work)
    await app.engine.warm_up()
    await one(app.engine, None, 4)
    cold = await cold_load(app.engine, refs[16:])
    speeds = await throughput(app.engine, refs[:16], args)
    await app.engine.shutdown()
    return {"cold": cold, "speeds": speeds}


def report(results: dict, args: argparse.Namespace, command: str) -> str:
    cold, speeds = results["cold"], results["speeds"]
    base = speeds["base model"]
    lines = [
        SECTION, "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Model: {args.model}, engine {args.backend}, max_loras {args.max_loras}, "
        f"max_cpu_loras {args.max_cpu_loras}, {args.requests} concurrent requests x "
        f"{args.max_tokens} tokens, {args.rounds} rounds per configuration.", "",
        "Cold load (1-token request, median of "
        f"{args.cold} new adapters): cold {cold['cold_ms']:.1f} ms, warm {cold['warm_ms']:.1f} ms, "
        f"base model {cold['base_ms']:.1f} ms; cold / warm = {cold['cold_ms'] / cold['warm_ms']:.2f}x, "
        f"load cost = {cold['cold_ms'] - cold['warm_ms']:.1f} ms.", "",
        "| configuration | tokens/s | ratio to base model |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {speed:.1f} | {speed / base:.2f} |" for name, speed in speeds.items()]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or append) the Adapters section of bench/RESULTS.md."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = current.find(SECTION + "\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(SECTION))
        updated = current[:start] + text + ("" if end < 0 else current[end:])
    RESULTS.write_text(updated)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = "python bench/bench_adapters.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="lorag-bench-adapters-") as tmp:
        app = build_app(args, Path(tmp))
        try:
            results = asyncio.run(measure(app, args, Path(tmp)))
        finally:
            app.close()
    text = report(results, args, command.strip())
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
