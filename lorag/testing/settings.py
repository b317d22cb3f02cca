"""Settings for fast tests: the fake embedder, small chunks, small commit groups."""

from __future__ import annotations

from pathlib import Path

from ingest.settings import ChunkingSettings, IngestSettings
from lorag.app.settings import Settings
from retrieval.settings import EmbedderSettings, IndexSettings, RetrievalSettings


def fast_settings(data_dir: Path, *, max_tokens: int = 32, overlap_tokens: int = 8,
                  commit_chunks: int = 8, index: IndexSettings | None = None,
                  **retrieval) -> Settings:
    """Settings for unit tests: the fake embedder, small chunks, small commit groups."""
    return Settings(
        data_dir=data_dir, environment="test",
        retrieval=RetrievalSettings(embedder=EmbedderSettings(backend="fake"),
                                    index=index or IndexSettings(), **retrieval),
        ingest=IngestSettings(chunking=ChunkingSettings(max_tokens=max_tokens,
                                                        overlap_tokens=overlap_tokens),
                              commit_chunks=commit_chunks))
