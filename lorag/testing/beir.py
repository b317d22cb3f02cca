"""Tiny BEIR-format folders for evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_beir(folder: Path, corpus: list[dict], queries: list[dict],
               qrels: list[tuple[str, str, int]], split: str = "test") -> Path:
    """Write corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}) and
    qrels/<split>.tsv (query-id, corpus-id, score, with a header line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder
