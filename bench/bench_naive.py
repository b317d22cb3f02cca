"""lorag's vLLM engine against the server users build by hand: transformers + PEFT,
switching adapters per request.

The naive server (``NaiveServer`` below) is what the PEFT documentation leads to: one
``PeftModel``, each adapter loaded once with ``load_adapter`` on first use, and per
request ``set_adapter(name)`` then ``generate`` (greedy), one request at a time. It is
given its best case: every adapter stays loaded, no HTTP, no tokenizer reloads.

lorag: ``app.engine`` (vLLM, in-process, LoRA per request, ``max_loras`` below the
number of adapters, so it swaps) with all requests submitted at once, as a server
receives concurrent clients. Both sides get the same rendered chat prompts, the same
adapters round-robin and the same ``max_tokens``; rounds alternate which goes first.
Throughput counts the tokens each side actually generated (a request may stop at
EOS). Model: SmolLM2-135M-Instruct (``--quick``/``--tiny``: the tiny random model).
The issue sets no numeric bar here; the ratio is reported.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path

from bench import models
from bench.common import BenchResult, Options, main, peak_rss_mb

QUESTIONS = ["What are the opening hours of the store?", "How do I reset my password?",
             "Can I return an item after thirty days?", "Which payment methods do you accept?"]
_ids = itertools.count()


class NaiveServer:
    """transformers + PEFT, one request at a time, switching adapters per request."""

    def __init__(self, model_path: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        self.model = None
        self.loaded: set[str] = set()

    def _use(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name).eval()
        elif name not in self.loaded:
            self.model.load_adapter(str(path), adapter_name=name)
        self.loaded.add(name)
        self.model.set_adapter(name)

    def handle(self, prompt: str, adapter: tuple[str, Path], max_tokens: int) -> int:
        """Generate for one request; returns the number of new tokens."""
        import torch

        self._use(*adapter)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id
                                      or self.tokenizer.eos_token_id)
        return int(out.shape[1] - inputs["input_ids"].shape[1])


def run(opts: Options) -> BenchResult:
    return asyncio.run(_run(opts))


async def _run(opts: Options) -> BenchResult:
    from adapters.settings import EngineSettings
    from lorag.app.settings import Settings
    from lorag.app.container import Lorag

    result = BenchResult("naive")
    model = opts.pick("smollm2", "tiny", "tiny")
    n_adapters, n_requests = opts.pick(8, 8, 4), opts.pick(16, 32, 8)
    max_tokens, rounds = opts.pick(32, 32, 8), opts.pick(2, 2, 1)
    max_loras = opts.pick(4, 4, 2)
    base = models.model_path(model)
    lora_paths = models.loras(model, n_adapters)
    with tempfile.TemporaryDirectory(prefix="lorag-bench-naive-") as tmp:
        engine = EngineSettings(model=str(base), max_model_len=1024, max_loras=max_loras,
                                max_cpu_loras=n_adapters, max_lora_rank=16,
                                max_num_seqs=n_requests, kv_cache_bytes=512 * 2**20)
        app = Lorag(Settings(data_dir=Path(tmp) / "data", environment="test", engine=engine))
        app.tenants.create("bench")
        refs = [app.adapters.register("bench", f"a{i}", p).ref() for i, p in enumerate(lora_paths)]
        await app.engine.warm_up()
        naive = NaiveServer(base)
        prompts = [app.engine.render_chat([{"role": "user", "content": QUESTIONS[i % 4]}])
                   for i in range(n_requests)]
        work = [(prompts[i], i % n_adapters) for i in range(n_requests)]
        # adapters loaded on both sides first: this measures serving, not first loads
        await _lorag_batch(app.engine, [(p, a) for p, a in work[:n_adapters]], refs, 1)
        _naive_batch(naive, work[:n_adapters], lora_paths, 1)
        times = {"lorag": [], "naive": []}
        for r in range(rounds):
            for side in (("naive", "lorag") if r % 2 == 0 else ("lorag", "naive")):
                if side == "lorag":
                    times["lorag"].append(await _lorag_batch(app.engine, work, refs, max_tokens))
                else:
                    times["naive"].append(_naive_batch(naive, work, lora_paths, max_tokens))
        await app.engine.shutdown()
        app.close()
    _report(result, model, n_adapters, n_requests, max_tokens, max_loras, times)
    result.metrics["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


async def _lorag_batch(engine, work, refs, max_tokens: int) -> tuple[int, float]:
    from adapters.engines.protocol import GenerationRequest, Sampling

    async def one(prompt: str, adapter: int) -> int:
        request = GenerationRequest(f"naive-{next(_ids)}", prompt=prompt,
                                    sampling=Sampling(max_tokens=max_tokens, temperature=0.0),
                                    adapter=refs[adapter])
        return sum([len(c.token_ids) async for c in engine.generate(request)])

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(p, a) for p, a in work))
    return sum(counts), time.perf_counter() - started


def _naive_batch(server: NaiveServer, work, paths, max_tokens: int) -> tuple[int, float]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # all cores for the naive server
    started = time.perf_counter()
    tokens = sum(server.handle(p, (f"a{a}", paths[a]), max_tokens) for p, a in work)
    return tokens, time.perf_counter() - started


def _report(result, model, n_adapters, n_requests, max_tokens, max_loras, times) -> None:
    speeds = {side: sum(t for t, _ in runs) / sum(s for _, s in runs) for side, runs in times.items()}
    rps = {side: len(runs) * n_requests / sum(s for _, s in runs) for side, runs in times.items()}
    ratio = speeds["lorag"] / speeds["naive"]
    result.metrics.update({"model": model, "adapters": n_adapters, "requests": n_requests,
                           "max_tokens": max_tokens, "max_loras": max_loras,
                           "tokens_per_s": {k: round(v, 1) for k, v in speeds.items()},
                           "requests_per_s": {k: round(v, 2) for k, v in rps.items()},
                           "lorag_over_naive": round(ratio, 2),
                           "batches": {k: [[t, round(s, 2)] for t, s in v] for k, v in times.items()}})
    result.table(f"Generation throughput, model {model}: {n_requests} requests round-robin over "
                 f"{n_adapters} adapters, <= {max_tokens} tokens each, greedy; lorag max_loras "
                 f"{max_loras}; {len(times['lorag'])} alternated rounds",
                 ["system", "tokens/s", "requests/s", "ratio to naive"],
                 [["lorag (vLLM engine, concurrent)", f"{speeds['lorag']:.1f}",
                   f"{rps['lorag']:.2f}", f"{ratio:.2f}x"],
                  ["naive transformers+PEFT (set_adapter per request)",
                   f"{speeds['naive']:.1f}", f"{rps['naive']:.2f}", "1.00x"]])
    result.notes.append(
        "No bar in the issue: lorag's throughput is {:.1f}x the hand-built server's "
        "(continuous batching across adapters vs one request at a time).".format(ratio))
    result.figure("naive_throughput.png", f"Multi-adapter throughput ({model})", "",
                  "tokens/s", [{"label": "tokens/s", "y": [speeds["lorag"], speeds["naive"]]}],
                  kind="bar", x=["lorag (vLLM)", "naive transformers+PEFT"])


if __name__ == "__main__":
    raise SystemExit(main(run))
