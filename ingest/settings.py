"""Settings of the ingestion pipeline."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ingest.pii import PiiSettings


class ChunkingSettings(BaseModel):
    max_tokens: int = Field(
        256, ge=16, description="Upper bound on a chunk's length in embedder tokens "
        "(also capped by the embedder's own max sequence length).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")


class IngestSettings(BaseModel):
    chunking: ChunkingSettings = ChunkingSettings()
    max_document_bytes: int = Field(20 * 2**20, ge=1, description="Larger documents are rejected.")
    progress: bool = Field(True, description="Show a progress bar in the CLI.")
    commit_chunks: int = Field(
        512, ge=1, description="Chunks embedded in one call and committed in one transaction. "
        "Larger groups batch better; smaller ones lose less work to a crash.")
    pii: PiiSettings = Field(default_factory=PiiSettings, description="PII found in documents: "
                             "off, flag (counted in the job record) or redact (before anything "
                             "is stored, embedded or indexed); per tenant, with deny-lists.")
