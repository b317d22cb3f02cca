"""OpenAI's Files API on the caller's tenant: upload, list, retrieve, delete, content."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from lorag.core.files import FilePurpose
from lorag.core.pages import Order, PageRequest
from server.deps import Lorag, TenantId
from server.files import schemas
from server.files.serving import file_list, to_file, upload_fields

router = APIRouter(tags=["files"])


@router.post("/v1/files", response_model=schemas.FileObject,
             responses=schemas.error_responses(400, 401, 413),
             summary="Upload a file (for vector stores or fine-tuning)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": schemas.UPLOAD_SCHEMA}}}})
async def create_file(request: Request, tenant: TenantId, lorag: Lorag) -> schemas.FileObject:
    upload, purpose, form = await upload_fields(request)
    try:
        stored = await asyncio.to_thread(lorag.files.create, tenant, upload.filename, purpose,
                                         upload.file)
    finally:
        await form.close()
    return to_file(stored)


@router.get("/v1/files", response_model=schemas.FileList,
            responses=schemas.error_responses(400, 401, 404), summary="The caller's files")
def list_files(tenant: TenantId, lorag: Lorag, purpose: FilePurpose | None = None,
               limit: int = Query(20, ge=1, le=100), order: Order = Order.DESC,
               after: str | None = Query(None, max_length=100)) -> schemas.FileList:
    files, more = lorag.files.list(tenant, PageRequest(limit, order, after), purpose)
    return file_list(files, more)


@router.get("/v1/files/{file_id}", response_model=schemas.FileObject,
            responses=schemas.error_responses(401, 404), summary="One file")
def retrieve_file(file_id: str, tenant: TenantId, lorag: Lorag) -> schemas.FileObject:
    return to_file(lorag.files.get(tenant, file_id))


@router.delete("/v1/files/{file_id}", response_model=schemas.Deleted,
               responses=schemas.error_responses(401, 404),
               summary="Delete a file (and take it out of every vector store)")
async def delete_file(file_id: str, tenant: TenantId, lorag: Lorag) -> schemas.Deleted:
    await asyncio.to_thread(lorag.files.delete, tenant, file_id)
    return schemas.Deleted(id=file_id, object="file")


@router.get("/v1/files/{file_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       **schemas.error_responses(401, 404)},
            summary="The file's bytes")
def file_content(file_id: str, tenant: TenantId, lorag: Lorag) -> FileResponse:
    stored = lorag.files.get(tenant, file_id)
    return FileResponse(stored.path, media_type="application/octet-stream",
                        filename=stored.filename)
