"""Settings of the ingestion pipeline."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ingest.pii import PiiSettings


class ChunkingSettings(BaseModel):
    max_tokens: int = Field(
        256, ge=16, description="Upper bound on a chunk's length in embedder tokens "
        "(also capped by the embedder's own max sequence length).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens shared by consecutive chunks.")


class FormatSettings(BaseModel):
    """Limits on what one file may unpack into (bad input fails that document alone)."""

    max_unpacked_bytes: int = Field(
        200 * 2**20, ge=1, description="Office files and e-books are zip archives: one whose "
        "members add up to more than this (uncompressed) is refused as a zip bomb.")
    max_compression_ratio: float = Field(
        200.0, ge=1, description="A zip member compressed more than this many times "
        "(and over 1 MiB unpacked) is refused as a zip bomb.")
    max_table_rows: int = Field(
        5000, ge=1, description="A spreadsheet or CSV with more rows than this (all sheets "
        "together) is refused: load large tables as data, not as documents to search.")
    max_attachment_depth: int = Field(
        2, ge=0, description="E-mail attachments are read up to this depth of nesting.")


class WebSettings(BaseModel):
    """Fetching pages for ``--url`` and ``--sitemap``: polite, bounded, incremental."""

    user_agent: str = Field("lorag-ingest/0.1", description="Sent with every request and "
                            "matched against robots.txt.")
    min_interval_s: float = Field(1.0, ge=0, description="Least time between two requests "
                                  "to the same host.")
    timeout_s: float = Field(20.0, gt=0, description="Connect and read timeout of a request, "
                             "and the most a page's whole body may take to arrive.")
    max_page_bytes: int = Field(5 * 2**20, ge=1, description="A page (or sitemap) longer "
                                "than this is abandoned as a failure of that page.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed per request.")
    max_pages: int = Field(10_000, ge=1, description="URLs taken from one sitemap (with "
                           "the sitemaps it indexes).")


class IngestSettings(BaseModel):
    chunking: ChunkingSettings = ChunkingSettings()
    formats: FormatSettings = FormatSettings()
    web: WebSettings = WebSettings()
    max_document_bytes: int = Field(20 * 2**20, ge=1, description="Larger documents are rejected.")
    progress: bool = Field(True, description="Show a progress bar in the CLI.")
    commit_chunks: int = Field(
        512, ge=1, description="Chunks embedded in one call and committed in one transaction. "
        "Larger groups batch better; smaller ones lose less work to a crash.")
    pii: PiiSettings = Field(default_factory=PiiSettings, description="PII found in documents: "
                             "off, flag (counted in the job record) or redact (before anything "
                             "is stored, embedded or indexed); per tenant, with deny-lists.")
