"""lorag on Ray against lorag alone, on the same machine, side by side in one run.

    python -m bench.bench_ray [--quick | --tiny] --out FILE.json

1. Chat through ``lorag serve --ray`` (Serve proxy -> ingress replica -> engine replica
   through a streaming handle, its own local cluster) against ``lorag serve``
   (in-process engine): both child processes up at once with the tiny model and a LoRA
   brand; rounds of the same requests one at a time and 4 at a time, the side that goes
   first alternating each round. Bar: mean latency ray / local <= 1.15 at each
   concurrency, with the 95% interval over rounds (bench/stats.py).
2. Ingestion of the same corpus (the Python documentation, as bench_ingest) into a fresh
   tenant per round: ``lorag ingest`` (local embedder) against ``lorag ingest --ray``
   (Ray Data actor pool on a local cluster started beforehand, its start and Ray Data's
   first use not counted, as the local side's model load is not), alternating. On one
   machine this measures Ray's overhead; bar: ray / local <= 1.3.
   Each commit group is one Ray Data run (printed per round); one short document ingested
   on each side at the end shows a run's fixed cost (the actor pool's start). Both sides
   embed with the same backend, precision and texts at once (the table's first row): with
   the ONNX embedder, the actors run the driver's OnnxEncoding without importing torch.
3. Ray Serve's own floor, no lorag in it: a bare two-deployment Serve app (proxy -> a
   FastAPI ingress -> one handle call to a second deployment, trivial work) against the
   same FastAPI route under uvicorn in one process, rounds alternating. The difference is
   what Serve's path costs any request on this machine; the table sets it beside the
   chat bar's allowance (0.15 x ``lorag serve``'s mean one at a time).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.common import BenchResult, Options, main, progress
from bench.corpus import copy_corpus, corpus_files
from bench.stats import rounds_interval
from lorag.testing.server import LoragProcess

NAME = "ray"
CHAT_BAR = 1.15
CONCURRENCY = (1, 4)
REQUESTS = 8  # per side, round and concurrency
ONE_DOCUMENT = {"id": "one-short-document", "text": "The warranty covers two years."}
BODY = {"model": "bench-voice", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "Tell me about the warranty."}]}


def run(opts: Options) -> BenchResult:
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        per_round = _chat(opts, Path(tmp), result)
        _ingestion(opts, Path(tmp), result)
        _serve_floor(opts, Path(tmp), result, statistics.fmean(per_round["local"][1]))
    return result


def _ingestion(opts: Options, tmp: Path, result: BenchResult) -> None:
    """Both containers built once (the Ray one on a local cluster started beforehand, its
    start not counted); each round ingests the corpus into a fresh tenant on each side,
    the side that goes first alternating round by round."""
    import ray
    import ray.data

    from lorag.app.container import Lorag
    from lorag.app.settings import RaySettings, Settings
    from lorag.cluster.ingest import ray_ingestion
    from lorag.cluster.runtime import connect

    files, corpus = corpus_files(opts.pick(40, 24, 6))
    folder = copy_corpus(files, tmp / "corpus")
    rounds = opts.pick(8, 6, 3)  # 3 left a quiet 1.16x undecided: [1.01, 1.33]
    connect(RaySettings(data_resource=None), num_cpus=2, log_to_driver=False)
    apps = {}
    try:
        for kind in ("local", "ray"):
            settings = Settings(data_dir=tmp / f"ingest-{kind}", environment="test",
                                ray=RaySettings(ingest_embed_num_cpus=2))
            apps[kind] = ray_ingestion(settings) if kind == "ray" else Lorag(settings)
            apps[kind].embedder.warm_up()  # the local side's model load is not counted either
        seconds = {kind: [] for kind in apps}
        chunks = {kind: 0 for kind in apps}
        ray_embedding = apps["ray"].documents.embed_documents
        embedders = _embedders(apps["local"].embedder, ray_embedding)
        # Ray Data's first use in a process (its executor's imports, the cluster's stats
        # actor) is not counted either: each ingest's own actor pool start is
        ray.data.range(1).materialize()
        progress(NAME, f"embedder: local {embedders['local']}; ray {embedders['ray']}")
        runs = []  # Ray Data runs (actor pool starts) per ingest: one per commit group
        for r in range(rounds):
            for kind in (list(apps) if r % 2 == 0 else list(apps)[::-1]):
                apps[kind].tenants.create(f"bench{r}")
                before = ray_embedding.runs
                started = time.perf_counter()
                report = apps[kind].documents.ingest(f"bench{r}", [folder])
                seconds[kind].append(time.perf_counter() - started)
                chunks[kind] = report.chunks_embedded
                if kind == "ray":
                    runs.append(ray_embedding.runs - before)
            progress(NAME, f"ingest round {r + 1}/{rounds}: local {seconds['local'][-1]:.1f} s, "
                     f"ray {seconds['ray'][-1]:.1f} s, {chunks['ray']} chunks, "
                     f"{runs[-1]} Ray Data run(s)")
        reingest, one = {}, {}
        for kind, app in apps.items():
            again = time.perf_counter()
            assert app.documents.ingest("bench0", [folder]).chunks_embedded == 0
            reingest[kind] = time.perf_counter() - again
            # one short document: on the Ray side the fixed cost of a run (the actor
            # pool's start: a worker importing Ray Data, the embedder's load)
            alone = time.perf_counter()
            assert app.documents.ingest("bench0", [ONE_DOCUMENT]).chunks_embedded == 1
            one[kind] = time.perf_counter() - alone
    finally:
        for app in apps.values():
            app.close()
        ray.shutdown()
    interval = rounds_interval(seconds["ray"], seconds["local"])
    result.metrics["ingest"] = {"corpus": corpus, "files": len(files), "chunks": chunks,
                                "rounds": rounds, "seconds": seconds, "reingest": reingest,
                                "ray_data_runs": runs, "one_document": one,
                                "embedders": embedders,
                                "ratio": interval.value}
    mean = {kind: statistics.fmean(values) for kind, values in seconds.items()}
    result.table(f"Ingestion: Ray Data embedding vs local ({len(files)} files, {rounds} "
                 "rounds, order alternating)",
                 ["", "local", "ray", "ray / local", "95% interval"],
                 [["embedder", embedders["local"], embedders["ray"], "", ""],
                  ["first ingest, mean (s)", round(mean["local"], 2), round(mean["ray"], 2),
                   round(interval.value, 3),
                   "" if interval.low is None else f"{interval.low:.3f}-{interval.high:.3f}"],
                  ["re-ingest, nothing changed (s)", round(reingest["local"], 2),
                   round(reingest["ray"], 2), round(reingest["ray"] / reingest["local"], 3), ""],
                  ["one short document (s): a Ray Data run's fixed cost", round(one["local"], 2),
                   round(one["ray"], 2), "", ""],
                  ["chunks embedded per round", chunks["local"], chunks["ray"], "", ""],
                  ["Ray Data runs per ingest (each starts the actor pool)", "",
                   max(runs), "", ""]])
    result.ratio_bar("ray_ingest_overhead", "ingestion through Ray Data / local ingestion",
                     interval, "<=", 1.3, why="one node: Ray's scheduling, object store and the "
                     "actor pool's start (a fresh worker importing Ray Data and loading the "
                     "embedder: with ONNX, the driver's OnnxEncoding, without torch) per commit "
                     "group, with no second machine to gain from")


FLOOR_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.post("/chat")
async def chat(body: dict) -> dict:
    return {"text": "x" * 64, "messages": len(body.get("messages", []))}
"""


def _serve_floor(opts: Options, tmp: Path, result: BenchResult, local_chat_s: float) -> None:
    """Sequential requests to a bare Serve app and to the same route under uvicorn, 20 a
    side per round, the side that goes first alternating."""
    import subprocess
    import sys

    import ray
    from fastapi import FastAPI
    from ray import serve

    from lorag.app.settings import RaySettings
    from lorag.cluster.runtime import connect
    from lorag.testing.server import answers_ok, free_port

    api = FastAPI()

    @serve.deployment
    class Engine:
        async def __call__(self, body: dict) -> dict:
            return {"text": "x" * 64, "messages": len(body.get("messages", []))}

    @serve.deployment
    @serve.ingress(api)
    class Ingress:
        def __init__(self, engine):
            self.engine = engine

        @api.post("/chat")
        async def chat(self, body: dict) -> dict:
            return await self.engine.remote(body)

    (tmp / "floor_app.py").write_text(FLOOR_APP)
    ports = {"serve": free_port(), "uvicorn": free_port()}
    connect(RaySettings(data_resource=None), num_cpus=2, log_to_driver=False)
    plain = subprocess.Popen([sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir",
                              str(tmp), "--host", "127.0.0.1", "--port", str(ports["uvicorn"]),
                              "--log-level", "warning"])
    try:
        if not answers_ok(plain, f"http://127.0.0.1:{ports['uvicorn']}/docs", 60, "uvicorn",
                          lambda: "", interval=0.2):
            raise RuntimeError("the plain uvicorn app did not answer within 60 s")
        serve.start(http_options={"host": "127.0.0.1", "port": ports["serve"]})
        serve.run(Ingress.bind(Engine.bind()), name="floor", route_prefix="/")
        per_round = _floor_rounds(ports, opts.pick(20, 10, 3))
    finally:
        plain.terminate()
        plain.wait()
        serve.shutdown()
        ray.shutdown()
    mean = {kind: statistics.fmean(values) * 1000 for kind, values in per_round.items()}
    result.metrics["serve_floor_ms"] = mean
    result.table("Ray Serve's own floor: a bare Serve app (proxy -> FastAPI ingress -> one "
                 "handle call) vs the same route under uvicorn, sequential requests",
                 ["uvicorn mean (ms)", "Serve mean (ms)", "Serve adds (ms)",
                  "chat bar's allowance: 0.15 x lorag serve (ms)"],
                 [[round(mean["uvicorn"], 2), round(mean["serve"], 2),
                   round(mean["serve"] - mean["uvicorn"], 2), round(0.15 * local_chat_s * 1000, 1)]])


def _floor_rounds(ports: dict[str, int], rounds: int) -> dict[str, list[float]]:
    body = {"messages": [{"role": "user", "content": "Tell me about the warranty."}]}
    per_round: dict[str, list[float]] = {kind: [] for kind in ports}
    with httpx.Client(timeout=60) as client:
        def timed(kind: str, n: int) -> float:
            started = time.perf_counter()
            for _ in range(n):
                client.post(f"http://127.0.0.1:{ports[kind]}/chat", json=body).raise_for_status()
            return (time.perf_counter() - started) / n

        for kind in ports:  # warm: connections, routes, the handle
            timed(kind, 30)
        for r in range(rounds):
            for kind in (list(ports) if r % 2 == 0 else list(ports)[::-1]):
                per_round[kind].append(timed(kind, 20))
    return per_round


def _embedders(local, ray_embedding) -> dict[str, str]:
    """What embeds on each side: backend, precision, texts or torch threads at once (the
    same on both sides, or the comparison is not of Ray's overhead)."""
    import torch

    from retrieval.embedders import OnnxEmbedder

    backend = "onnx" if isinstance(local, OnnxEmbedder) else "sentence-transformers"
    common = f"{backend} {local.document_precision}"
    encoding = ray_embedding.encoding()
    actors = ("OnnxEncoding (onnxruntime, tokenizers)" if encoding is not None
              else "the embedder (torch)")
    threads = max(1, int(ray_embedding.settings.ingest_embed_num_cpus))
    return {"local": f"{common}, {torch.get_num_threads()} at once",
            "ray": f"{common} from {actors}, {threads} at once"}


def _chat(opts: Options, tmp: Path, result: BenchResult,
          ray_env: dict[str, str] | None = None) -> dict:
    """Both servers up at once; each round times ``REQUESTS`` requests on each side at
    each concurrency, the side that goes first alternating round by round. Returns the
    per-round mean latencies (``ray_env``: extra environment of the Ray side)."""
    from lorag.testing.tiny_model import build_tiny_model, make_lora

    model = build_tiny_model(tmp / "tiny")
    lora = make_lora(model, tmp / "lora", seed=1)
    rounds = opts.pick(16, 12, 4)
    env = {"LORAG_ENGINE__MODEL": str(model), "LORAG_ENGINE__MAX_MODEL_LEN": "512",
           "LORAG_ENGINE__KV_CACHE_BYTES": str(128 * 2**20), "LORAG_ENVIRONMENT": "test",
           "LORAG_RAY__ADAPTER_CACHE_DIR": str(tmp / "adapter-cache")}
    servers = {"local": LoragProcess(tmp / "chat-local", env=env, ready_timeout=900),
               "ray": LoragProcess(tmp / "chat-ray", env={**env, **(ray_env or {})},
                                   args=("--ray",), ready_timeout=900)}
    per_round = {kind: {c: [] for c in CONCURRENCY} for kind in servers}
    with ExitStack() as stack:
        for server in servers.values():  # both start at once, then both must be ready
            stack.callback(server.stop)
            server.start(wait=False)
        clients = {}
        for kind, server in servers.items():
            server.wait_ready()
            key = _tenant(server, lora)
            clients[kind] = stack.enter_context(httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300))
        for kind, client in clients.items():  # warm: adapter loaded, routes and pools hot
            for concurrency in CONCURRENCY:
                _timed(client, concurrency, REQUESTS)
        for r in range(rounds):
            order = list(clients) if r % 2 == 0 else list(clients)[::-1]
            for concurrency in CONCURRENCY:
                for kind in order:
                    per_round[kind][concurrency].append(
                        statistics.fmean(_timed(clients[kind], concurrency, REQUESTS)))
            progress(NAME, f"chat round {r + 1}/{rounds}: " + ", ".join(
                f"{c} at a time ray/local {per_round['ray'][c][-1] / per_round['local'][c][-1]:.2f}"
                for c in CONCURRENCY))
    rows = []
    for concurrency in CONCURRENCY:
        local, ray_ = per_round["local"][concurrency], per_round["ray"][concurrency]
        interval = rounds_interval(ray_, local)
        rows.append([concurrency, round(statistics.fmean(local) * 1000, 1),
                     round(statistics.fmean(ray_) * 1000, 1), round(interval.value, 3),
                     "" if interval.low is None else f"{interval.low:.3f}-{interval.high:.3f}"])
        result.ratio_bar(f"ray_chat_overhead_{concurrency}", "chat latency through "
                         f"`lorag serve --ray` / `lorag serve`, {concurrency} at a time",
                         interval, "<=", CHAT_BAR,
                         why="per request: Serve's proxy, the ingress replica and the engine "
                         "replica (three more processes) on the same two cores")
    result.metrics["chat"] = {"rounds": rounds, "requests_per_round": REQUESTS,
                              "per_round_mean_s": per_round}
    result.table(f"Chat: lorag serve --ray vs lorag serve (tiny model, adapter, 16 tokens; "
                 f"{rounds} rounds of {REQUESTS} requests per side, order alternating)",
                 ["concurrency", "local mean (ms)", "ray mean (ms)", "ray / local",
                  "95% interval"], rows)
    return per_round


def _timed(client: httpx.Client, concurrency: int, n: int) -> list[float]:
    """Latency of each of ``n`` chat requests, ``concurrency`` at a time."""
    def one(_: int) -> float:
        started = time.perf_counter()
        client.post("/v1/chat/completions", json=BODY).raise_for_status()
        return time.perf_counter() - started

    if concurrency == 1:
        return [one(i) for i in range(n)]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


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


if __name__ == "__main__":
    raise SystemExit(main(run))
