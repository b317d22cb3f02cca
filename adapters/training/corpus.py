"""Texts for domain adaptation (a tenant's ingested documents) and for the forgetting
check (general text that is no tenant's)."""

from __future__ import annotations

import sqlite3
from importlib import resources
from importlib.resources.abc import Traversable
from itertools import groupby
from pathlib import Path
from typing import Iterable

from lorag.layout import Layout

GENERAL_TEXT = "general.txt"

# The tenant store's chunks (retrieval/store.py schema) in document order, with their
# character span in the normalised document text. Read on a read-only connection of
# our own, so training never holds a lock the ingestion pipeline waits for.
DOCUMENT_CHUNKS_QUERY = (
    "SELECT c.document_pk, c.char_start, c.char_end, c.text FROM chunks c "
    "ORDER BY c.document_pk, c.position")


def tenant_document_texts(layout: Layout, tenant: str) -> list[str]:
    """One text per ingested document of the tenant, rebuilt from its chunks without the
    overlap between neighbours ([] when the tenant has ingested nothing).

    Whole documents (not chunks) are the unit of the held-out split, so no held-out
    text also appears in training through a chunk overlap.
    """
    path = layout.tenant_store(tenant)
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='chunks'").fetchone():
            return []
        rows = conn.execute(DOCUMENT_CHUNKS_QUERY).fetchall()
    finally:
        conn.close()
    return [join_chunks((start, end, text) for _, start, end, text in group)
            for _, group in groupby(rows, key=lambda row: row[0])]


def join_chunks(chunks: Iterable[tuple[int, int, str]]) -> str:
    """Rebuild a text from ``(char_start, char_end, text)`` chunks in order, keeping each
    overlapped stretch once; a chunk whose text does not match its span is appended
    whole, and gaps become a blank line."""
    parts: list[str] = []
    covered = None
    for start, end, text in chunks:
        if covered is None or start >= covered or len(text) != end - start:
            parts.append(text if covered is None or start == covered else "\n\n" + text)
        else:
            parts.append(text[covered - start:])
        covered = end if covered is None else max(covered, end)
    return "".join(parts)


def demo_assets() -> Traversable:
    """The shipped demo assets (corpus, SFT sets, adapters, general text): package data of
    the installed lorag; ``importlib.resources.as_file`` gives a real path where one is needed."""
    return resources.files("lorag") / "demo_assets"


def general_texts(path: Path | None = None) -> list[str]:
    """Paragraphs of general text for the forgetting check (default: the shipped file)."""
    text = (path or demo_assets() / GENERAL_TEXT).read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]
