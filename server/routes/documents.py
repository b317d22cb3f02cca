"""The caller's documents: ingest (a JSON batch or uploaded files, as a job), list,
get and delete."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

from fastapi import APIRouter, Path as PathParam, Query, Request, status
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lorag.errors import InvalidInput
from server import schemas
from server.deps import AppMetrics, Lorag, TenantId
from server.routes.jobs import to_job

router = APIRouter(tags=["documents"])

MAX_FILES = 1000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")

UPLOAD_SCHEMA = {"type": "object", "required": ["files"], "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"},
              "description": "Text, Markdown, HTML, reST, PDF or JSONL files; a file's "
                             "name is its document id."}}}


@router.post(
    "/v1/documents", status_code=status.HTTP_202_ACCEPTED, response_model=schemas.Job,
    responses=schemas.error_responses(400, 401, 413),
    summary="Ingest documents (a JSON batch, or multipart `files`) as a job",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsCreate"}},
        "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}})
async def create_documents(request: Request, tenant: TenantId, lorag: Lorag,
                           metrics: AppMetrics) -> schemas.Job:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        inputs = await _save_uploads(request, lorag.layout.uploads_dir / tenant)
    else:
        inputs = [doc.model_dump() for doc in (await _json_batch(request)).documents]
    job_id = await asyncio.to_thread(lorag.documents.start_job, tenant, inputs)
    metrics.documents_submitted.labels(tenant).inc(len(inputs))
    return to_job(lorag.jobs.get(tenant, job_id))


@router.get("/v1/documents", response_model=schemas.DocumentList,
            responses=schemas.error_responses(400, 401), summary="The caller's documents")
def list_documents(tenant: TenantId, lorag: Lorag, limit: int = Query(100, ge=1, le=1000),
                   offset: int = Query(0, ge=0)) -> schemas.DocumentList:
    documents = lorag.documents.list(tenant, limit + 1, offset)
    return schemas.DocumentList(data=[to_document(d) for d in documents[:limit]],
                                has_more=len(documents) > limit)


@router.get("/v1/documents/{document_id:path}", response_model=schemas.Document,
            responses=schemas.error_responses(401, 404), summary="One document")
def get_document(tenant: TenantId, lorag: Lorag,
                 document_id: str = PathParam(max_length=512)) -> schemas.Document:
    return to_document(lorag.documents.get(tenant, document_id))


@router.delete("/v1/documents/{document_id:path}", response_model=schemas.Deleted,
               responses=schemas.error_responses(401, 404),
               summary="Delete a document with its chunks")
async def delete_document(tenant: TenantId, lorag: Lorag,
                          document_id: str = PathParam(max_length=512)) -> schemas.Deleted:
    await asyncio.to_thread(lorag.documents.delete, tenant, document_id)
    return schemas.Deleted(id=document_id, object="document")


def to_document(document) -> schemas.Document:
    return schemas.Document(**{name: getattr(document, name) for name in (
        "id", "title", "source", "metadata", "chunks", "characters", "content_hash",
        "created_at", "updated_at")})


async def _json_batch(request: Request) -> schemas.DocumentsCreate:
    """The JSON body, validated as FastAPI would (errors name the field)."""
    body = await request.body()
    try:
        return schemas.DocumentsCreate.model_validate_json(body)
    except ValidationError as exc:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def _save_uploads(request: Request, root: Path) -> list[Path]:
    """Each uploaded file, saved under its (sanitised) name in a folder of its own."""
    form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise InvalidInput("upload one or more files in the form field 'files'", param="files")
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    saved = []
    for i, upload in enumerate(files):
        name = _safe_name(upload.filename, i)
        target = folder / name
        if target.exists():
            raise InvalidInput(f"two files are named {name!r}", param=f"files[{i}]")
        with target.open("wb") as out:
            await asyncio.to_thread(shutil.copyfileobj, upload.file, out)
        saved.append(target)
    await form.close()
    return saved


def _safe_name(filename: str | None, index: int) -> str:
    name = _UNSAFE.sub("_", Path(filename or "").name).strip(" .")
    if not name:
        raise InvalidInput("every file needs a name", param=f"files[{index}]")
    return name[:200]
