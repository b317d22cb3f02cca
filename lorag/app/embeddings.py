"""Embeddings for callers (``/v1/embeddings``): the tenant's embedding model, which is
the one its index is built with, on texts the caller gives.

``model`` is the embedder's name (``all-MiniLM-L6-v2`` by default), or one of the
tenant's brands (whose documents are embedded with that model). Texts are embedded as
documents are at ingestion, so a vector from here is comparable with the index's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from lorag.app.ports import BrandLookup
from lorag.core.errors import InvalidInput, NotFound
from retrieval.embedders import Embedder

MAX_INPUTS = 2048


@dataclass(frozen=True)
class Embeddings:
    model: str  # the embedder's name
    vectors: np.ndarray  # (len(texts), dimension) float32, L2-normalised
    tokens: int  # content tokens of all the texts


class EmbeddingService:
    def __init__(self, embedder: Callable[[], Embedder], brands: BrandLookup):
        self._embedder = embedder
        self.brands = brands

    def embed(self, tenant_id: str, model: str, texts: Sequence[str],
              dimensions: int | None = None) -> Embeddings:
        """Raises NotFound (param ``model``) for a model that is neither the embedder
        nor one of the tenant's brands; InvalidInput (``input``) for no text, too many,
        an empty one or one longer than the model reads; InvalidInput (``dimensions``)
        for a size other than the model's."""
        embedder = self._embedder()
        self._check_model(tenant_id, model, embedder.name)
        if not texts or len(texts) > MAX_INPUTS:
            raise InvalidInput(f"input: give 1 to {MAX_INPUTS} texts", param="input")
        if dimensions is not None and dimensions != embedder.dimension:
            raise InvalidInput(f"dimensions: {embedder.name} gives {embedder.dimension} "
                               "dimensions and cannot shorten them", param="dimensions")
        counts = embedder.count_tokens(list(texts))
        for i, (text, count) in enumerate(zip(texts, counts)):
            if not text.strip():
                raise InvalidInput("input must not be empty", param=f"input[{i}]")
            if count > embedder.max_tokens:
                raise InvalidInput(f"input has {count} tokens; {embedder.name} reads at most "
                                   f"{embedder.max_tokens}", param=f"input[{i}]",
                                   code="context_length_exceeded")
        return Embeddings(embedder.name, embedder.embed_documents(list(texts)), sum(counts))

    def _check_model(self, tenant_id: str, model: str, embedder: str) -> None:
        if model == embedder:
            return
        try:
            self.brands.get(tenant_id, model)
        except NotFound:
            raise NotFound(f"model {model!r} not found: give {embedder!r} (the embedding "
                           "model) or one of your brands", param="model") from None
