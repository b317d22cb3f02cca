"""OpenAI's Vector Stores API on the caller's tenant: stores, their files (attaching one
runs an ingestion job) and hybrid search restricted to a store."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Response

from lorag.app.vector_stores import FileStatus
from lorag.core.pages import Order, PageRequest
from server.deps import Lorag, TenantId
from server.vector_stores import schemas
from server.vector_stores.serving import (POLL_HEADERS, results_page, search_query, store_file_list,
                                          store_list, to_store, to_store_file)

router = APIRouter(tags=["vector stores"])


def chunking(lorag) -> schemas.StaticChunking:
    settings = lorag.settings.ingest.chunking
    return schemas.StaticChunking(max_chunk_size_tokens=settings.max_tokens,
                                  chunk_overlap_tokens=settings.overlap_tokens)


@router.post("/v1/vector_stores", response_model=schemas.VectorStore,
             responses=schemas.error_responses(400, 401, 404, 413), summary="Create a vector store")
async def create_vector_store(body: schemas.VectorStoreCreate, tenant: TenantId,
                              lorag: Lorag) -> schemas.VectorStore:
    view = await asyncio.to_thread(lorag.vector_stores.create, tenant, body.name, body.metadata,
                                   body.file_ids)
    return to_store(view)


@router.get("/v1/vector_stores", response_model=schemas.VectorStoreList,
            responses=schemas.error_responses(400, 401, 404), summary="The caller's vector stores")
def list_vector_stores(tenant: TenantId, lorag: Lorag, limit: int = Query(20, ge=1, le=100),
                       order: Order = Order.DESC, after: str | None = Query(None, max_length=100),
                       before: str | None = Query(None, max_length=100)) -> schemas.VectorStoreList:
    return store_list(*lorag.vector_stores.list(tenant, PageRequest(limit, order, after, before)))


@router.get("/v1/vector_stores/{vector_store_id}", response_model=schemas.VectorStore,
            responses=schemas.error_responses(401, 404), summary="One vector store")
def retrieve_vector_store(vector_store_id: str, tenant: TenantId,
                          lorag: Lorag) -> schemas.VectorStore:
    return to_store(lorag.vector_stores.view(tenant, vector_store_id))


@router.post("/v1/vector_stores/{vector_store_id}", response_model=schemas.VectorStore,
             responses=schemas.error_responses(400, 401, 404, 413), summary="Rename, new metadata")
def update_vector_store(vector_store_id: str, body: schemas.VectorStoreUpdate, tenant: TenantId,
                        lorag: Lorag) -> schemas.VectorStore:
    return to_store(lorag.vector_stores.update(tenant, vector_store_id, body.name, body.metadata))


@router.delete("/v1/vector_stores/{vector_store_id}", response_model=schemas.VectorStoreDeleted,
               responses=schemas.error_responses(401, 404),
               summary="Delete a vector store with its documents (the files stay)")
async def delete_vector_store(vector_store_id: str, tenant: TenantId,
                              lorag: Lorag) -> schemas.VectorStoreDeleted:
    await asyncio.to_thread(lorag.vector_stores.delete, tenant, vector_store_id)
    return schemas.VectorStoreDeleted(id=vector_store_id)


@router.post("/v1/vector_stores/{vector_store_id}/files", response_model=schemas.VectorStoreFile,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="Attach a file: an ingestion job reads it into the tenant's index")
async def create_vector_store_file(vector_store_id: str, body: schemas.VectorStoreFileCreate,
                                   tenant: TenantId, lorag: Lorag) -> schemas.VectorStoreFile:
    view = await asyncio.to_thread(lorag.vector_stores.attach, tenant, vector_store_id,
                                   body.file_id, body.attributes or {})
    return to_store_file(view, chunking(lorag))


@router.get("/v1/vector_stores/{vector_store_id}/files",
            response_model=schemas.VectorStoreFileList,
            responses=schemas.error_responses(400, 401, 404), summary="A vector store's files")
def list_vector_store_files(vector_store_id: str, tenant: TenantId, lorag: Lorag,
                            limit: int = Query(20, ge=1, le=100), order: Order = Order.DESC,
                            after: str | None = Query(None, max_length=100), before: str | None = Query(None, max_length=100),
                            filter: FileStatus | None = None) -> schemas.VectorStoreFileList:
    views, more = lorag.vector_stores.store_files(
        tenant, vector_store_id, PageRequest(limit, order, after, before), filter)
    return store_file_list(views, more, chunking(lorag))


@router.get("/v1/vector_stores/{vector_store_id}/files/{file_id}",
            response_model=schemas.VectorStoreFile, responses=schemas.error_responses(401, 404),
            summary="A vector store file and its status")
def retrieve_vector_store_file(vector_store_id: str, file_id: str, tenant: TenantId,
                               lorag: Lorag, response: Response) -> schemas.VectorStoreFile:
    view = lorag.vector_stores.file(tenant, vector_store_id, file_id)
    response.headers.update(POLL_HEADERS)
    return to_store_file(view, chunking(lorag))


@router.post("/v1/vector_stores/{vector_store_id}/files/{file_id}",
             response_model=schemas.VectorStoreFile,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="New attributes (the file is read again with them)")
async def update_vector_store_file(vector_store_id: str, file_id: str,
                                   body: schemas.VectorStoreFileUpdate, tenant: TenantId,
                                   lorag: Lorag) -> schemas.VectorStoreFile:
    view = await asyncio.to_thread(lorag.vector_stores.update_file, tenant, vector_store_id,
                                   file_id, body.attributes)
    return to_store_file(view, chunking(lorag))


@router.delete("/v1/vector_stores/{vector_store_id}/files/{file_id}",
               response_model=schemas.VectorStoreFileDeleted,
               responses=schemas.error_responses(401, 404),
               summary="Take a file out of a vector store (the file stays)")
async def delete_vector_store_file(vector_store_id: str, file_id: str, tenant: TenantId,
                                   lorag: Lorag) -> schemas.VectorStoreFileDeleted:
    await asyncio.to_thread(lorag.vector_stores.detach, tenant, vector_store_id, file_id)
    return schemas.VectorStoreFileDeleted(id=file_id)


@router.get("/v1/vector_stores/{vector_store_id}/files/{file_id}/content",
            response_model=schemas.FileContentPage, responses=schemas.error_responses(401, 404),
            summary="The text the index holds for the file")
def vector_store_file_content(vector_store_id: str, file_id: str, tenant: TenantId,
                              lorag: Lorag) -> schemas.FileContentPage:
    text = lorag.vector_stores.file_text(tenant, vector_store_id, file_id)
    return schemas.FileContentPage(data=[schemas.TextContent(text=text)] if text else [])


@router.post("/v1/vector_stores/{vector_store_id}/search",
             response_model=schemas.SearchResultsPage,
             responses=schemas.error_responses(400, 401, 404, 413),
             summary="lorag's hybrid search over the store's files, with attribute filters")
async def search_vector_store(vector_store_id: str, body: schemas.SearchRequest,
                              tenant: TenantId, lorag: Lorag) -> schemas.SearchResultsPage:
    queries = search_query(body)
    ranking = body.ranking_options
    threshold = ranking.score_threshold if ranking and ranking.score_threshold else 0.0
    results = await asyncio.to_thread(
        lorag.vector_stores.search, tenant, [vector_store_id], " ".join(queries),
        max_results=body.max_num_results, filters=body.filters, score_threshold=threshold)
    return results_page(queries, results)
