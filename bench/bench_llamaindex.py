"""Ingestion against LlamaIndex: the same files, the same embedding model, the same chunk
size, the same precision.

lorag: ``app.documents.ingest(tenant, [folder])`` (read, normalise, chunk, embed,
SQLite + FTS5, FAISS index file). LlamaIndex: ``SimpleDirectoryReader`` + an
``IngestionPipeline`` of ``SentenceSplitter`` (chunk size = lorag's chunk limit in the
model's tokens, same overlap, counted with the model's own tokenizer) and
``HuggingFaceEmbedding`` (the packaged all-MiniLM-L6-v2 folder, lorag's batch size)
into a ``FaissVectorStore`` (IndexFlatIP), in its own environment (``.bench-venv``).
Model loading is outside both timings.

Equal precision: both sides embed in float32 for the bar (lorag with
``document_precision=float32``, LlamaIndex at its default). Equal work: the two
splitters cut the same files into slightly different numbers of chunks (LlamaIndex
also embeds each chunk's metadata), so the bar compares throughput in chunks per
second, and the table gives each side's tokens per chunk. Rounds alternate which side
goes first, one side at a time; the bar's ratio is the geometric mean of the rounds'
with its 95% interval (bench/stats.py). Bar: lorag's chunks/s at least 1.5x
LlamaIndex's. lorag's bf16 document path (``document_precision=auto`` on CPUs with
native bf16) is its own line: lorag bf16 / lorag float32 in the same rounds.

The retriever comparison with LlamaIndex is in bench_retrieval (same index, same queries).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import corpus
from bench.baselines import LlamaIndexWorker, WorkerError, baseline_versions
from bench.common import BenchResult, Options, main, peak_rss_mb
from bench.stats import rounds_interval

BAR = 1.5
SIDES = ("lorag float32", "lorag bfloat16", "LlamaIndex float32")


def run(opts: Options) -> BenchResult:
    from lorag.app.settings import Settings
    from lorag.app.container import Lorag
    from retrieval.embedders import cpu_has_native_bf16

    result = BenchResult("llamaindex")
    files, name = corpus.corpus_files(opts.pick(24, 12, 2))
    rounds = opts.pick(6, 4, 2)
    sides = [s for s in SIDES if s != "lorag bfloat16" or cpu_has_native_bf16()]
    with tempfile.TemporaryDirectory(prefix="lorag-bench-li-") as tmp:
        docs = corpus.copy_corpus(files, Path(tmp) / "docs")
        apps = {side: _app(Settings, Lorag, Path(tmp) / side.replace(" ", "-"), side)
                for side in sides if side.startswith("lorag")}
        app = apps["lorag float32"]
        threads = _same_threads()
        chunker = app.documents.chunker
        spec = {"docs_dir": str(docs), "model_path": str(app.embedder.path),
                "chunk_size": chunker.limit, "chunk_overlap": chunker.overlap,
                "batch_size": app.settings.retrieval.embedder.batch_size,
                "torch_threads": threads, "precision": "float32"}
        runs: dict[str, list] = {side: [] for side in sides}
        with LlamaIndexWorker() as worker:
            for r in range(rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    runs[side].append(_li_ingest(worker, spec, result) if side.startswith("Llama")
                                      else _lorag_ingest(apps[side], f"round{r}", docs))
        for each in apps.values():
            each.close()
    _report(result, name, files, spec, runs)
    result.metrics["lorag_peak_rss_mb"] = round(peak_rss_mb(), 1)
    result.metrics["baseline_versions"] = baseline_versions()
    return result


def _app(settings_type, lorag_type, root: Path, side: str):
    precision = side.split()[-1]
    app = lorag_type(settings_type(data_dir=root, environment="test",
                                   retrieval={"embedder": {"document_precision": precision}}))
    app.embedder.embed_documents(["warm up"])  # model load is not timed, on either side
    app.documents, app.retrieval  # their imports are start-up cost, not ingestion
    return app


def _li_ingest(worker: LlamaIndexWorker, spec: dict, result: BenchResult) -> dict | None:
    try:
        return worker.call("ingest", **spec)
    except WorkerError as exc:
        result.notes.append(str(exc))
        return None


def _same_threads() -> int:
    """Both sides embed on all cores (set explicitly, so neither depends on defaults)."""
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def _lorag_ingest(app, tenant: str, docs: Path) -> dict:
    app.tenants.create(tenant)
    started = time.perf_counter()
    report = app.documents.ingest(tenant, [docs])
    seconds = time.perf_counter() - started
    assert report.failed == 0, report.failures[:3]
    store = app.retrieval.tenant_index(tenant).store
    texts = [r[0] for r in store.db.query("SELECT text FROM chunks")]
    tokens = sum(app.embedder.count_tokens(texts))
    return {"seconds": seconds, "documents": report.added, "chunks": report.chunks_embedded,
            "chunk_tokens_mean": tokens / max(1, len(texts))}


def _report(result: BenchResult, name, files, spec, runs: dict[str, list]) -> None:
    """The bar (lorag float32 / LlamaIndex float32, chunks per second) and the bf16 line;
    ``runs`` holds each side's rounds ({"seconds", "chunks", "chunk_tokens_mean"}, None
    for a LlamaIndex round that failed), in the order they alternated."""
    rates = {side: [r["chunks"] / r["seconds"] if r else None for r in rs]
             for side, rs in runs.items()}
    description = (f"ingestion of the same {len(files)} files, both in float32: lorag chunks/s "
                   "/ LlamaIndex chunks/s")
    result.metrics.update({"files": len(files), "chunk_tokens": spec["chunk_size"],
                           "overlap_tokens": spec["chunk_overlap"],
                           "batch_size": spec["batch_size"], "torch_threads": spec["torch_threads"],
                           **{f"{side} chunks_per_s": [round(x, 2) if x else None for x in xs]
                              for side, xs in rates.items()}})
    _table(result, name, files, spec, runs)
    if "lorag bfloat16" in rates:
        gain = rounds_interval(rates["lorag bfloat16"], rates["lorag float32"])
        result.metrics["bf16_gain"] = round(gain.value, 3)
        result.notes.append(
            f"lorag's bf16 document path (document_precision=auto on this CPU) ingests "
            f"{gain.value:.2f}x as many chunks/s as its float32 path (95% interval "
            f"{_span(gain)}, {gain.samples} rounds); not part of the bar.")
    pairs = [(a, b) for a, b in zip(rates["lorag float32"], rates["LlamaIndex float32"]) if b]
    if not pairs:
        result.bar("llamaindex.ingest_speedup", description, None, ">=", BAR, timing=True,
                   why="the LlamaIndex side did not run (see notes)")
        return
    speedup = rounds_interval(*zip(*pairs))
    result.metrics["speedup"] = round(speedup.value, 3)
    result.ratio_bar("llamaindex.ingest_speedup", description, speedup, ">=", BAR,
                     why="both sides spend nearly all their time in the same model call at "
                         "the same precision",
                     to_meet="only a faster embedder path (the ONNX Runtime backend, "
                             "bench_embedders) or a GPU would widen the gap")
    result.figure("llamaindex_ingest.png", "Ingestion throughput, same files", "",
                  "chunks/s", [{"label": "chunks/s (median of rounds)",
                                "y": [statistics.median(x for x in rates[s] if x) for s in rates]}],
                  kind="bar", x=list(rates))


def _table(result: BenchResult, name, files, spec, runs: dict[str, list]) -> None:
    rows = []
    for side, rs in runs.items():
        done = [r for r in rs if r]
        if not done:
            rows.append([side, "n/a", "n/a", "n/a", "n/a"])
            continue
        seconds = statistics.median(r["seconds"] for r in done)
        rows.append([side, f"{seconds:.1f}", done[0]["chunks"],
                     f"{statistics.median(r['chunks'] / r['seconds'] for r in done):.1f}",
                     f"{done[0]['chunk_tokens_mean']:.0f}"])
    result.table(f"Ingestion, {name}: {len(files)} files; chunks of <= {spec['chunk_size']} "
                 f"tokens, overlap {spec['chunk_overlap']}, batch {spec['batch_size']}; medians "
                 f"of {len(next(iter(runs.values())))} alternated rounds",
                 ["side", "seconds", "chunks", "chunks/s", "tokens per chunk (mean)"], rows)
    result.notes.append(
        "LlamaIndex embeds each chunk with its metadata (file name, path) as its default "
        "MetadataMode.EMBED does; its splitter subtracts that from the chunk size, so both "
        "send at most the same number of tokens per chunk to the model.")


def _span(interval) -> str:
    return "n/a" if interval.low is None else f"{interval.low:.2f}-{interval.high:.2f}"


if __name__ == "__main__":
    raise SystemExit(main(run))
