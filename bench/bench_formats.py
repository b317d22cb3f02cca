"""Ingestion throughput per document format, on the fixtures of lorag.testing.documents.

For each format (DOCX, PPTX, XLSX, CSV, EPUB, EML, PDF) ``copies`` distinct variants of
its fixture (every text tagged with the copy's number, so no chunk is shared and every
copy is embedded) are ingested into a fresh tenant with the real embedding model, and
side by side the baseline: the raw ``SentenceTransformer.encode`` of exactly the chunks
lorag stored (same model object, batch size and precision). Reported per format:
documents/s, the share of ingest time outside the embedder (measured inside the same
ingest), the format's reader alone per document, and lorag's ingest / the raw encode.
Rounds alternate which side runs first.

    .venv/bin/python -m bench.run --only formats            # writes bench/RESULTS.md
    .venv/bin/python -m bench.bench_formats --quick --out /tmp/formats.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_ingest import ModelClock, _chunk_texts, _raw_encode
from bench.common import BenchResult, Options, main, peak_rss_mb

def _write(folder: Path, copies: int) -> dict[str, Path]:
    """Per format, a folder of its copies (each read once: the libraries' imports are
    start-up cost, not ingestion)."""
    from lorag.testing.documents import FIXTURES

    folders = {}
    for name, (make, _) in FIXTURES.items():
        kind = Path(name).suffix.lstrip(".")
        files = folder / kind
        files.mkdir(parents=True)
        for copy in range(1, copies + 1):
            (files / f"copy{copy}{Path(name).suffix}").write_bytes(make(variant=copy))
        _reader_seconds(files)
        folders[kind] = files
    return folders


def _reader_seconds(files: Path) -> float:
    from ingest.loaders import Limits, read_file
    from ingest.settings import FormatSettings

    limits = Limits(2**30, FormatSettings())
    started = time.perf_counter()
    for path in sorted(files.iterdir()):
        read_file(path, path.name, limits)
    return time.perf_counter() - started


def _ingest(app, clock: ModelClock, tenant: str, folder: Path) -> dict:
    app.tenants.create(tenant)
    clock.seconds = 0.0
    started = time.perf_counter()
    report = app.documents.ingest(tenant, [folder])
    seconds = time.perf_counter() - started
    assert report.failed == 0 and report.chunks_embedded > 0, report.failures[:3]
    return {"seconds": seconds, "model": clock.seconds, "docs": report.added,
            "chunks": report.chunks_embedded}


def run(opts: Options) -> BenchResult:
    from lorag.app.container import Lorag
    from lorag.app.settings import Settings

    result = BenchResult("formats")
    copies, rounds = opts.pick(20, 8, 2), opts.pick(3, 2, 1)
    with tempfile.TemporaryDirectory(prefix="lorag-bench-formats-") as tmp:
        folders = _write(Path(tmp) / "docs", copies)
        app = Lorag(Settings(data_dir=Path(tmp) / "data", environment="test"))
        batch = app.settings.retrieval.embedder.batch_size
        app.embedder.embed_documents(["word " * 300] * batch)  # load + warm, at lorag's precision
        app.documents, app.retrieval  # their imports are start-up cost, not ingestion
        clock = ModelClock(app.embedder)
        runs: dict[str, list[dict]] = {kind: [] for kind in folders}
        for number in range(rounds):
            for kind, files in folders.items():
                runs[kind].append(_round(app, clock, number, kind, files))
                print(f"[formats] round {number + 1}/{rounds} {kind}: "
                      f"{_describe(runs[kind][-1])}", file=sys.stderr)
        app.close()
    _report(result, copies, runs)
    return result


def _round(app, clock, number: int, kind: str, files: Path) -> dict:
    """lorag's ingest, and the raw encode of the chunks it stored: on odd rounds the raw
    encode first (with round 0's chunks: chunking is deterministic, checked below)."""
    tenant = f"{kind}-{number}"
    if number % 2:
        texts = _chunk_texts(app, f"{kind}-0")
        raw = _raw_encode(app, texts)
    found = _ingest(app, clock, tenant, files)
    if number % 2:
        assert texts == _chunk_texts(app, tenant)
    else:
        raw = _raw_encode(app, _chunk_texts(app, tenant))
    return {**found, "raw": raw, "reader": _reader_seconds(files)}


def _describe(r: dict) -> str:
    return (f"{r['docs']} docs {r['chunks']} chunks in {r['seconds']:.2f}s (model "
            f"{r['model']:.2f}s, reader {r['reader']:.2f}s); raw encode {r['raw']:.2f}s")


def _report(result: BenchResult, copies: int, runs: dict[str, list[dict]]) -> None:
    rows = []
    for kind, rounds in runs.items():
        med = {k: statistics.median(r[k] for r in rounds)
               for k in ("seconds", "model", "reader", "raw")}
        docs, chunks = rounds[-1]["docs"], rounds[-1]["chunks"]
        outside = 1 - med["model"] / med["seconds"]
        rows.append([kind, docs, chunks, round(docs / med["seconds"], 1), round(outside, 3),
                     round(1000 * med["reader"] / docs, 1), round(med["seconds"], 2),
                     round(med["raw"], 2), round(med["seconds"] / med["raw"], 2)])
        result.metrics[f"{kind}_docs_per_s"] = round(docs / med["seconds"], 2)
        result.metrics[f"{kind}_outside_embedder_share"] = round(outside, 3)
        result.metrics[f"{kind}_reader_ms_per_doc"] = round(1000 * med["reader"] / docs, 2)
        result.metrics[f"{kind}_ingest_over_raw_encode"] = round(med["seconds"] / med["raw"], 3)
    result.table(f"Ingestion per format: {copies} distinct copies of each fixture, real "
                 f"embedding model, medians of {len(next(iter(runs.values())))} rounds",
                 ["format", "documents", "chunks", "documents/s", "share outside embedder",
                  "reader ms/doc", "ingest s", "raw encode s", "ingest / raw encode"], rows)
    result.metrics["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result.notes.append("The fixtures are tiny (one to three short sections each), so the "
                        "share outside the embedder is an upper bound: per-document costs "
                        "(reading, hashing, the SQLite transaction, the index file) weigh "
                        "more than they do in real files.")


if __name__ == "__main__":
    sys.exit(main(run))
