"""Logging, set up once by the entry points (CLI, server); library code only logs."""

from __future__ import annotations

import logging
import os

_configured = False


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once; ``LORAG_LOG_LEVEL`` overrides the default INFO."""
    global _configured
    if _configured:
        return
    level = (level or os.environ.get("LORAG_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    _configured = True
