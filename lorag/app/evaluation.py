"""Retrieval evaluation on BEIR-format folders, with trec_eval's nDCG@k and recall@k.

Conventions (BEIR / MTEB, so numbers compare with published ones):

- corpus.jsonl ``{"_id", "title", "text"}``: the document text is ``title + " " + text``;
- queries.jsonl ``{"_id", "text"}``; qrels/<split>.tsv ``query-id, corpus-id, score`` with
  a header line; the queries evaluated are those of the split's qrels;
- a document's score is its best chunk's score; the run keeps the top 100 documents
  of each query, minus a document whose id equals the query id;
- nDCG@k as trec_eval computes it: gains are the graded qrels levels (levels <= 0 gain
  nothing), DCG = sum gain_i / log2(i + 1) over ranks i = 1..k, the ideal DCG comes from
  all the query's judged-relevant documents, and ranking sorts by score descending then
  document id descending; recall@k = relevant documents (level > 0) in the top k over
  all relevant ones. Means are over the evaluated queries.
- hybrid fuses the dense and lexical document rankings by reciprocal rank fusion.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ingest.types import DocumentInput
from lorag.core.errors import InvalidInput
from lorag.core.modes import SEARCH_MODES, RetrievalMode
from retrieval.fusion import reciprocal_rank_fusion

log = logging.getLogger(__name__)

DEPTH = 100          # documents kept per query
CHUNK_DEPTH = 1000   # chunks fetched per query to rank documents by their best chunk

Qrels = dict[str, dict[str, int]]


@dataclass
class BeirDataset:
    corpus_path: Path
    queries: dict[str, str]
    qrels: Qrels

    def corpus(self) -> Iterator[DocumentInput]:
        """The corpus as documents (text = title + " " + text, as BEIR and MTEB embed it)."""
        with self.corpus_path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    row = json.loads(line)
                    title = row.get("title") or ""
                    text = (title + " " + (row.get("text") or "")).strip()
                    yield DocumentInput(str(row["_id"]), text, title=title or None,
                                        metadata=row.get("metadata") or {})


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; raises InvalidInput (param ``beir``) if a file is missing."""
    folder = Path(folder)
    paths = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"{path} not found: a BEIR folder holds corpus.jsonl, "
                               f"queries.jsonl and qrels/{split}.tsv", param="beir")
    queries = {}
    with paths[1].open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
    qrels = read_qrels(paths[2])
    return BeirDataset(paths[0], {q: queries[q] for q in qrels if q in queries}, qrels)


def read_qrels(path: Path) -> Qrels:
    """query-id -> {corpus-id: level}, skipping the header line."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


# --- metrics (trec_eval) -----------------------------------------------------------------

def trec_ranking(scores: dict[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, then document id descending."""
    return sorted(scores, key=lambda doc: (scores[doc], doc), reverse=True)


def ndcg_at_k(scores: dict[str, float], judged: dict[str, int], k: int = 10) -> float:
    """trec_eval's ndcg_cut.k for one query."""
    ranking = trec_ranking(scores)[:k]
    dcg = sum(max(judged.get(doc, 0), 0) / math.log2(rank + 1)
              for rank, doc in enumerate(ranking, start=1))
    ideal_gains = sorted((level for level in judged.values() if level > 0), reverse=True)[:k]
    ideal = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, start=1))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(scores: dict[str, float], judged: dict[str, int], k: int = 10) -> float:
    """trec_eval's recall.k for one query (relevant = level > 0)."""
    relevant = {doc for doc, level in judged.items() if level > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(trec_ranking(scores)[:k])) / len(relevant)


# --- running ---------------------------------------------------------------------------

def document_scores(hits, query_id: str, depth: int = DEPTH) -> dict[str, float]:
    """Best chunk score per document, top ``depth`` documents, the query's own id dropped."""
    best: dict[str, float] = {}
    for hit in hits:
        if hit.document_id != query_id and hit.score > best.get(hit.document_id, -math.inf):
            best[hit.document_id] = hit.score
    return {doc: best[doc] for doc in trec_ranking(best)[:depth]}


def run_queries(retrieval, tenant: str, dataset: BeirDataset,
                mode: RetrievalMode) -> dict[str, dict]:
    """query id -> {document id: score} for dense or lexical."""
    return {query_id: document_scores(retrieval.search(tenant, text, k=CHUNK_DEPTH, mode=mode),
                                      query_id)
            for query_id, text in dataset.queries.items()}


def fuse_runs(dense: dict[str, dict], lexical: dict[str, dict], rrf_k: int) -> dict[str, dict]:
    """Hybrid: reciprocal rank fusion of each query's dense and lexical document rankings."""
    return {query_id: dict(reciprocal_rank_fusion(
        [trec_ranking(dense[query_id]), trec_ranking(lexical[query_id])], rrf_k)[:DEPTH])
        for query_id in dense}


def score_run(run: dict[str, dict], qrels: Qrels, k: int = 10) -> dict:
    queries = list(run)
    if not queries:
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, "queries": 0}
    ndcg = sum(ndcg_at_k(run[q], qrels[q], k) for q in queries) / len(queries)
    recall = sum(recall_at_k(run[q], qrels[q], k) for q in queries) / len(queries)
    return {f"ndcg@{k}": round(100 * ndcg, 2), f"recall@{k}": round(100 * recall, 2),
            "queries": len(queries)}


def evaluate(app, tenant: str, folder: Path, modes: Sequence[RetrievalMode], *,
             split: str = "test", progress: bool = False) -> dict:
    """Ingest the BEIR corpus into ``tenant`` (incrementally) and score each mode.

    Use a tenant holding nothing but this corpus. Raises InvalidInput (param ``beir``).
    """
    dataset = load_beir(folder, split)
    started = time.monotonic()
    report = app.documents.ingest(tenant, list(dataset.corpus()), progress=progress)
    result = {"dataset": str(folder), "split": split, "tenant": tenant,
              "ingest": {"added": report.added, "updated": report.updated,
                         "unchanged": report.unchanged, "failed": report.failed,
                         "chunks_embedded": report.chunks_embedded,
                         "seconds": round(time.monotonic() - started, 1)}}
    hybrid, dense, lexical = RetrievalMode.HYBRID, RetrievalMode.DENSE, RetrievalMode.LEXICAL
    runs: dict[RetrievalMode, dict] = {}
    for mode in SEARCH_MODES:  # hybrid comes last: it fuses the dense and lexical runs
        if mode not in modes and not (mode is not hybrid and hybrid in modes):
            continue
        started = time.monotonic()
        runs[mode] = fuse_runs(runs[dense], runs[lexical], app.retrieval.settings.rrf_k) \
            if mode is hybrid else run_queries(app.retrieval, tenant, dataset, mode)
        if mode in modes:
            result[mode] = {**score_run(runs[mode], dataset.qrels),
                            "seconds": round(time.monotonic() - started, 1)}
            log.info("eval tenant=%s mode=%s %s", tenant, mode, result[mode])
    return result
