"""Part 2 of the pool benchmark (``bench/bench_pool.py``): lorag over two real vLLM
servers against the same load sent straight to them, the client spreading it."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_adapters import model_path
from bench.bench_http import QUESTIONS, SYSTEM, Sample, one, summarize
from bench.common import BenchResult, Options, progress
from bench.stats import rounds_interval

ADAPTER = "bench-lora"
BAR = 1.10  # lorag p50 latency / direct p50, concurrency 8


def sizes(opts: Options, model: str | None) -> dict:
    # requests per concurrency in all, split into alternating rounds (each side once a round)
    # each round sends ``requests / rounds`` requests a side at a time (at concurrency 8,
    # one wave of 8): the bars are the per-round ratios' geometric mean with Student's t,
    # so the rounds, not the requests, decide them
    size = opts.pick(full=dict(model="smollm2", requests={1: 6, 8: 128}, max_tokens=32, rounds=16),
                     quick=dict(model="tiny", requests={1: 8, 8: 64}, max_tokens=32, rounds=8),
                     tiny=dict(model="tiny", requests={1: 2, 8: 24}, max_tokens=8, rounds=3))
    return {**size, "model": model or size["model"], "max_model_len": 2048,
            "kv_cache_bytes": 256 * 2**20, "max_num_seqs": 16}


def start_servers(path: str, size: dict, work: Path):
    from lorag.testing.vllm_server import VLLMServer

    servers = [VLLMServer(path, work / f"vllm-{i}.log", max_model_len=size["max_model_len"],
                          kv_cache_bytes=size["kv_cache_bytes"], max_num_seqs=size["max_num_seqs"],
                          max_loras=2, max_cpu_loras=2) for i in range(2)]
    for server in servers:
        server.start(wait=False)
    for server in servers:
        server.wait_ready()
    return servers


def start_lorag(path: str, size: dict, servers, adapter: Path, work: Path):
    from lorag.testing.server import LoragProcess

    env = {"LORAG_ENGINE__MODEL": path, "LORAG_ENGINE__MAX_MODEL_LEN": str(size["max_model_len"]),
           "LORAG_ENVIRONMENT": "test", "LORAG_LOG_LEVEL": "WARNING",
           "LORAG_ADAPTERS__IMPORT_ROOTS": json.dumps([str(adapter.parent)])}
    args = ("--engine", "remote", *(a for s in servers for a in ("--server", s.url)))
    server = LoragProcess(work / "lorag-data", env=env, args=args).start()
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=300)
    key = _ok(admin.post("/admin/tenants", json={"id": "bench"}))["key"]["api_key"]
    _ok(admin.post("/admin/tenants/bench/adapters/register",
                   json={"name": "voice", "path": str(adapter)}))
    _ok(admin.post("/admin/tenants/bench/brands", json={
        "name": "bench", "adapter": "voice", "system_prompt": SYSTEM}))
    return server, key


def _ok(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    try:
        return response.json()
    except ValueError:  # vLLM answers adapter loads in plain text
        return {}


class Spread:
    """A load with one URL and header set per request, in turn (the client spreading)."""

    def __init__(self, name: str, targets: list[tuple[str, dict]], bodies: list[dict]):
        self.name, self.targets, self.bodies = name, targets, bodies

    def side(self, i: int):
        from bench.bench_http import Side

        url, headers = self.targets[i % len(self.targets)]
        return Side(self.name, url, headers, [self.bodies[i % len(self.bodies)]])


async def load(spread: Spread, requests: int, concurrency: int) -> tuple[list[Sample], float]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def gated(i: int) -> Sample:
            async with gate:
                side = spread.side(i)
                return await one(client, side, side.bodies[0])

        for i in range(len(spread.targets)):  # connections and adapters warm
            await gated(i)
        started = time.perf_counter()
        samples = await asyncio.gather(*(gated(i) for i in range(requests)))
        return list(samples), time.perf_counter() - started


def spreads(servers, lorag, key: str, size: dict) -> dict[str, Spread]:
    common = {"max_tokens": size["max_tokens"], "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    direct = [{"model": ADAPTER, **common, "messages": [{"role": "system", "content": SYSTEM}, *c]}
              for c in conversations]
    through = [{"model": "bench", **common, "messages": c, "retrieval": {"mode": "off"}}
               for c in conversations]
    return {"direct (client spreads)": Spread("direct", [(s.url, {}) for s in servers], direct),
            "lorag": Spread("lorag", [(lorag.url, {"Authorization": f"Bearer {key}"})], through)}


async def measure(pair: dict[str, Spread], size: dict) -> dict:
    """{concurrency: {side: summary + each request's latency and each round's tokens/s}};
    the sides alternate round by round, which goes first flipping each round."""
    found: dict = {}
    step = 0
    for concurrency, requests in size["requests"].items():
        rounds = size["rounds"] if concurrency > 1 else min(size["rounds"], requests)
        per_round = max(concurrency, requests // rounds)
        kept = {name: ([], 0.0, [], []) for name in pair}
        for _ in range(rounds):
            order = list(pair) if step % 2 == 0 else list(pair)[::-1]
            step += 1
            for name in order:
                samples, wall = await load(pair[name], per_round, concurrency)
                all_samples, all_wall, rates, p50s = kept[name]
                tokens = sum(x.completion_tokens for x in samples)
                kept[name] = (all_samples + samples, all_wall + wall, [*rates, tokens / wall],
                              [*p50s, statistics.median(x.latency for x in samples)])
                progress("pool", f"real: concurrency {concurrency}, {name}: {len(samples)} "
                                 f"requests in {wall:.1f} s")
        found[concurrency] = {name: {**summarize(samples, wall), "rounds_tps": rates,
                                     "rounds_p50": p50s}
                              for name, (samples, wall, rates, p50s) in kept.items()}
    return found


def measure_real(opts: Options, model: str | None, result: BenchResult) -> None:
    from lorag.testing.tiny_model import make_lora

    size = sizes(opts, model)
    path = model_path(size["model"])
    with tempfile.TemporaryDirectory(prefix="lorag-bench-pool-") as tmp:
        work = Path(tmp)
        adapter = make_lora(Path(path), work / "adapters" / "lora", seed=7)
        servers, lorag = start_servers(path, size, work), None
        try:
            for server in servers:
                _ok(httpx.post(server.url + "/v1/load_lora_adapter", timeout=120,
                               json={"lora_name": ADAPTER, "lora_path": str(adapter)}))
            lorag, key = start_lorag(path, size, servers, adapter, work)
            found = asyncio.run(measure(spreads(servers, lorag, key, size), size))
        finally:
            if lorag is not None:
                lorag.stop()
            for server in servers:
                server.stop()
        command = " ".join(["python", *servers[0].command[1:]])
    report(found, size, command, result)


def report(found: dict, size: dict, command: str, result: BenchResult) -> None:
    rows, ratios = [], {}
    for concurrency, by_side in found.items():
        for side, s in by_side.items():
            rows.append([concurrency, side, s["n"], round(s["p50_ms"], 1), round(s["p99_ms"], 1),
                         round(s["ttft_p50_ms"], 1), round(s["tokens_per_s"], 1)])
        lorag, direct = by_side["lorag"], by_side["direct (client spreads)"]
        ratios[concurrency] = (rounds_interval(lorag["rounds_p50"], direct["rounds_p50"]).value,
                               rounds_interval(direct["rounds_tps"], lorag["rounds_tps"]).value)
        result.metrics[f"real.c{concurrency}.p50_ratio"] = round(ratios[concurrency][0], 3)
        result.metrics[f"real.c{concurrency}.throughput_ratio"] = round(ratios[concurrency][1], 3)
    result.table(f"Real: lorag over two vLLM servers vs the client spreading the same load "
                 f"({size['model']}, {size['max_tokens']} tokens per answer, greedy, streaming, "
                 f"one adapter, retrieval off)",
                 ["concurrency", "side", "requests", "p50 ms", "p99 ms", "TTFT p50 ms",
                  "tokens/s"], rows)
    result.table("lorag's overhead over a fleet (lorag / direct; throughput: direct / lorag)",
                 ["concurrency", "p50", "throughput"],
                 [[c, round(p, 3), round(t, 3)] for c, (p, t) in ratios.items()])
    top = max(ratios)
    why = ("lorag adds per request: key, brand and adapter lookups, prompt rendering and "
           "token counting, routing, and one more HTTP hop with its own SSE framing; on this "
           "2-core machine the lorag process also takes CPU from the two servers")
    if size["model"] == "tiny":
        why += "; the tiny model answers in milliseconds, so fixed per-request costs dominate"
    lorag, direct = found[top]["lorag"], found[top]["direct (client spreads)"]
    result.ratio_bar("pool.real.p50", f"lorag p50 latency / direct p50 (per round), {top} "
                     f"concurrent requests over two vLLM servers ({size['model']})",
                     rounds_interval(lorag["rounds_p50"], direct["rounds_p50"]), "<=", BAR,
                     why=why)
    result.ratio_bar("pool.real.throughput", f"direct throughput / lorag's, {top} concurrent "
                     f"requests over two vLLM servers ({size['model']})",
                     rounds_interval(direct["rounds_tps"], lorag["rounds_tps"]), "<=", BAR,
                     why=why)
    result.notes.append(f"Real part, each vLLM server: `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                        f"{command}`; lorag: `lorag serve --engine remote --server URL1 --server "
                        f"URL2`.")


if __name__ == "__main__":
    sys.exit("run bench.bench_pool")
