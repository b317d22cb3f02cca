"""Settings of the retrieval area: embedder, per-tenant index, search."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from lorag.core.modes import SEARCH_MODES, RetrievalMode


class EmbedderSettings(BaseModel):
    backend: str = Field(
        "auto", description="Registered Embedder name (sentence-transformers, onnx), or auto: "
                            "onnx (int8) on a CPU device whose CPU has VNNI, where it embeds "
                            "documents ~2x faster than the PyTorch encode at the same nDCG "
                            "(bench/bench_embedders.py), sentence-transformers elsewhere. "
                            "Both give the model's vectors: either searches the other's index.")
    model_path: str | None = Field(
        None, description="A sentence-transformers model folder; None = the packaged all-MiniLM-L6-v2.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts per encode call.")
    device: str = Field("cpu", description="torch device for the embedder.")
    document_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Precision of document embedding (ingestion): bfloat16 autocast is "
                            "~3x faster on CPUs with AMX (amx_bf16) and gives "
                            "vectors within cosine 0.9999 of float32; auto = bfloat16 where the "
                            "CPU has AMX (with AVX512-BF16 alone bf16 measured slower than "
                            "float32, bench/bench_embedders.py). Queries always embed in float32 (for one short text the "
                            "casts cost more than they save).")
    onnx_precision: Literal["auto", "int8", "float32"] = Field(
        "auto", description="backend=onnx: int8 = the exported model dynamically quantized "
                            "(int8 weights and activations, per channel); auto = int8 where the "
                            "CPU has VNNI (avx512_vnni or avx_vnni in /proc/cpuinfo), float32 "
                            "elsewhere.")
    onnx_cache_dir: str | None = Field(
        None, description="backend=onnx: where exported models are kept, one folder per model "
                          "folder's content hash and precision; None = $XDG_CACHE_HOME/lorag/"
                          "onnx (~/.cache/lorag/onnx).")


class IndexSettings(BaseModel):
    kind: Literal["auto", "flat", "hnsw"] = Field(
        "auto", description="Vector index kind; auto = flat below ann_threshold chunks, hnsw above.")
    ann_threshold: int = Field(
        200_000, ge=1, description="A tenant with at least this many chunks gets an ANN (HNSW) index.")
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build-time beam width.")
    hnsw_ef_search: int = Field(96, ge=8, description="HNSW query-time beam width (the least).")
    hnsw_ef_search_per_sqrt: float = Field(
        1.0, ge=0, description="The query beam grows with the index: ef_search = max("
                               "hnsw_ef_search, this x sqrt(vectors)). At a fixed beam recall "
                               "falls as an index grows (bench/ann: recall@10 0.98 at 50k "
                               "vectors, 0.87 at 1M with 96); 0 keeps hnsw_ef_search.")
    cache_tenants: int = Field(
        64, ge=1, description="Per-tenant indexes kept in memory (LRU); others are loaded on use.")
    search_threads: int = Field(1, ge=1, description="FAISS OpenMP threads for serving queries.")
    save_seconds: float = Field(
        30.0, ge=0, description="During ingestion, the index file is rewritten at most this often "
        "(and always at the end); it is a cache that catches up from the store on load.")
    deletion_log_max: int = Field(
        100_000, ge=0, description="Deletion-log rows kept per tenant before pruning; a process "
        "whose index is older than the pruned log rebuilds it from the store.")


class RetrievalSettings(BaseModel):
    embedder: EmbedderSettings = EmbedderSettings()
    index: IndexSettings = IndexSettings()
    default_k: int = Field(5, ge=1, le=100, description="Chunks returned when k is not given.")
    default_mode: RetrievalMode = Field(
        RetrievalMode.HYBRID, description="Search mode when a search names none: dense, "
                                          "lexical or hybrid (off is a chat option, not a search).")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    hybrid_candidates: int = Field(
        50, ge=1, le=1000, description="Chunks taken from each of the dense and lexical lists "
        "before fusing (at least k).")
    exact_filter_limit: int = Field(
        4096, ge=0, description="A filter allowing at most this many chunks is answered by exact "
        "scoring of their stored vectors instead of an index search with an IDSelector.")

    @field_validator("default_mode")
    @classmethod
    def _search_mode(cls, mode: RetrievalMode) -> RetrievalMode:
        if mode not in SEARCH_MODES:
            raise ValueError(f"must be one of {', '.join(SEARCH_MODES)}")
        return mode
