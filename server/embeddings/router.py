"""POST /v1/embeddings: OpenAI's embeddings with the tenant's embedding model."""

from __future__ import annotations

import asyncio
import base64
import logging

import numpy as np
from fastapi import APIRouter

from server.deps import Lorag, TenantId
from server.embeddings import schemas

log = logging.getLogger(__name__)
router = APIRouter(tags=["documents"])


@router.post("/v1/embeddings", response_model=schemas.EmbeddingList,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="Embed texts with the tenant's embedding model")
async def create_embeddings(body: schemas.EmbeddingRequest, tenant: TenantId,
                            lorag: Lorag) -> schemas.EmbeddingList:
    result = await asyncio.to_thread(lorag.embeddings.embed, tenant, body.model, body.texts(),
                                     body.dimensions)
    if body.user:
        log.info("embeddings tenant=%s user=%s inputs=%d", tenant, body.user, len(result.vectors))
    return schemas.EmbeddingList(
        data=[schemas.Embedding(index=i, embedding=encode(vector, body.encoding_format))
              for i, vector in enumerate(result.vectors)],
        model=result.model,
        usage=schemas.EmbeddingUsage(prompt_tokens=result.tokens, total_tokens=result.tokens))


def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
