"""lorag on Ray against lorag alone, on the same machine, side by side in one run.

    python -m bench.bench_ray [--quick | --tiny] --out FILE.json

1. Ingestion of the same corpus (the Python documentation, as bench_ingest) into a fresh
   tenant: ``lorag ingest`` (local embedder) against ``lorag ingest --ray`` (Ray Data
   actor pool on a local cluster started beforehand, its start not counted). On one
   machine this measures Ray's overhead; bar: ray / local <= 1.3.
2. Chat through ``lorag serve --ray`` (ingress -> engine replica through Serve handles)
   against ``lorag serve`` (in-process engine), both as child processes with the tiny
   model and a LoRA adapter, the same requests sequentially and 4 at a time; bar: mean
   latency ray / local <= 1.15.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import BenchResult, Options, main, progress
from bench.corpus import copy_corpus, corpus_files

NAME = "ray"


def run(opts: Options) -> BenchResult:
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        _ingestion(opts, Path(tmp), result)
        _chat(opts, Path(tmp), result)
    return result


def _ingestion(opts: Options, tmp: Path, result: BenchResult) -> None:
    import ray

    from lorag.app.container import Lorag
    from lorag.app.settings import RaySettings, Settings
    from lorag.cluster.ingest import ray_ingestion

    files, corpus = corpus_files(opts.pick(120, 40, 8))
    folder = copy_corpus(files, tmp / "corpus")
    ray.init(num_cpus=2, object_store_memory=500_000_000, include_dashboard=False,
             log_to_driver=False)
    try:
        seconds, chunks = {}, {}
        for kind in ("local", "ray"):
            settings = Settings(data_dir=tmp / f"ingest-{kind}", environment="test",
                                ray=RaySettings(ingest_embed_num_cpus=2))
            app = ray_ingestion(settings) if kind == "ray" else Lorag(settings)
            try:
                app.tenants.create("bench")
                app.embedder.warm_up()  # the local side's model load is not counted either
                started = time.perf_counter()
                report = app.documents.ingest("bench", [folder])
                seconds[kind] = time.perf_counter() - started
                chunks[kind] = report.chunks_embedded
                again = time.perf_counter()
                assert app.documents.ingest("bench", [folder]).chunks_embedded == 0
                seconds[kind + "_reingest"] = time.perf_counter() - again
            finally:
                app.close()
            progress(NAME, f"ingest {kind}: {seconds[kind]:.1f} s, {chunks[kind]} chunks")
    finally:
        ray.shutdown()
    ratio = seconds["ray"] / seconds["local"]
    result.metrics["ingest"] = {"corpus": corpus, "files": len(files), "chunks": chunks,
                                "seconds": seconds, "ratio": ratio}
    result.table("Ingestion: Ray Data embedding vs local (same corpus, same machine)",
                 ["", "local", "ray", "ray / local"],
                 [["first ingest (s)", round(seconds["local"], 2), round(seconds["ray"], 2),
                   round(ratio, 3)],
                  ["re-ingest, nothing changed (s)", round(seconds["local_reingest"], 2),
                   round(seconds["ray_reingest"], 2),
                   round(seconds["ray_reingest"] / seconds["local_reingest"], 3)],
                  ["chunks embedded", chunks["local"], chunks["ray"], ""]])
    result.bar("ray_ingest_overhead", "ingestion through Ray Data / local ingestion", ratio,
               "<=", 1.3, why="one node: Ray's scheduling, object store and the actor pool's "
               "start per commit group, with no second machine to gain from")


def _chat(opts: Options, tmp: Path, result: BenchResult) -> None:
    from lorag.testing.server import LoragProcess
    from lorag.testing.tiny_model import build_tiny_model, make_lora

    model = build_tiny_model(tmp / "tiny")
    lora = make_lora(model, tmp / "lora", seed=1)
    n = opts.pick(64, 24, 12)
    env = {"LORAG_ENGINE__MODEL": str(model), "LORAG_ENGINE__MAX_MODEL_LEN": "512",
           "LORAG_ENGINE__KV_CACHE_BYTES": str(128 * 2**20), "LORAG_ENVIRONMENT": "test",
           "LORAG_RAY__ADAPTER_CACHE_DIR": str(tmp / "adapter-cache")}
    latencies: dict[str, dict[str, list[float]]] = {}
    for kind, args in (("local", ()), ("ray", ("--ray",))):
        with LoragProcess(tmp / f"chat-{kind}", env=env, args=args, ready_timeout=900) as server:
            key = _tenant(server, lora)
            latencies[kind] = _requests(server.url, key, n)
        progress(NAME, f"chat {kind}: mean {statistics.mean(latencies[kind]['1']) * 1000:.0f} ms")
    rows, ratios = [], {}
    for concurrency in ("1", "4"):
        local = statistics.mean(latencies["local"][concurrency])
        ray_ = statistics.mean(latencies["ray"][concurrency])
        ratios[concurrency] = ray_ / local
        rows.append([concurrency, round(local * 1000, 1), round(ray_ * 1000, 1),
                     round(ray_ / local, 3)])
    result.metrics["chat"] = {"requests": n, "latencies": latencies, "ratios": ratios}
    result.table("Chat: lorag serve --ray vs lorag serve (tiny model, adapter, 16 tokens)",
                 ["concurrency", "local mean (ms)", "ray mean (ms)", "ray / local"], rows)
    result.bar("ray_chat_overhead", "chat latency through the Ray app / lorag serve, one at "
               "a time", ratios["1"], "<=", 1.15,
               why="two Serve hops (proxy -> ingress, ingress -> engine replica) per request")


def _tenant(server, lora: Path) -> str:
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=120) as admin:
        created = admin.post("/admin/tenants", json={"id": "bench"})
        created.raise_for_status()
        imported = server.data_dir / "import" / "adapters" / "voice"  # an import root
        shutil.copytree(lora, imported, dirs_exist_ok=True)
        admin.post("/admin/tenants/bench/adapters/register",
                   json={"name": "voice", "path": str(imported)}).raise_for_status()
        admin.post("/admin/tenants/bench/brands",
                   json={"name": "bench-voice", "adapter": "voice"}).raise_for_status()
        return created.json()["key"]["api_key"]


def _requests(url: str, key: str, n: int) -> dict[str, list[float]]:
    body = {"model": "bench-voice", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "Tell me about the warranty."}]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        def one(_: int) -> float:
            started = time.perf_counter()
            client.post("/v1/chat/completions", json=body).raise_for_status()
            return time.perf_counter() - started

        for _ in range(3):  # warm: adapter loaded, routes hot
            one(0)
        sequential = [one(i) for i in range(n)]
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(one, range(n)))
    return {"1": sequential, "4": concurrent}


if __name__ == "__main__":
    raise SystemExit(main(run))
