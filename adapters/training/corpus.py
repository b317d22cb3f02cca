"""Texts for the forgetting check: general text that is no tenant's. (A tenant's own
texts for domain adaptation come from retrieval, joined in by the application.)"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

GENERAL_TEXT = "general.txt"


def demo_assets() -> Traversable:
    """The shipped demo assets (corpus, SFT sets, adapters, general text): package data of
    the installed lorag; ``importlib.resources.as_file`` gives a real path where one is needed."""
    return resources.files("lorag") / "demo_assets"


def general_texts(path: Path | None = None) -> list[str]:
    """Paragraphs of general text for the forgetting check (default: the shipped file)."""
    text = (path or demo_assets() / GENERAL_TEXT).read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]
