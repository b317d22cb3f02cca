"""The caller's documents: ingest (a JSON batch or uploaded files, as a job), list,
get and delete."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

from fastapi import APIRouter, Path as PathParam, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lorag.core.errors import InvalidInput, NotFound
from lorag.core.jobs import QUEUED, RUNNING
from server.deps import AppMetrics, AppTasks, Lorag, TenantId
from server.documents import schemas
from server.jobs.router import to_job

router = APIRouter(tags=["documents"])

MAX_FILES = 1000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")

UPLOAD_SCHEMA = {"type": "object", "required": ["files"], "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"},
              "description": "Text, Markdown, reST, HTML, PDF, Word (.docx), PowerPoint "
                             "(.pptx), Excel (.xlsx), CSV, EPUB, e-mail (.eml) or JSONL "
                             "files; a file's name is its document id."}}}


@router.post(
    "/v1/documents", status_code=status.HTTP_202_ACCEPTED, response_model=schemas.Job,
    responses=schemas.error_responses(400, 401, 413, 429),
    summary="Ingest documents (a JSON batch, or multipart `files`) as a job",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsCreate"}},
        "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}})
async def create_documents(request: Request, tenant: TenantId, lorag: Lorag,
                           metrics: AppMetrics, tasks: AppTasks) -> schemas.Job:
    folder = None
    await asyncio.to_thread(lorag.limits.check_ingest, tenant)  # 429: a quota is used up
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        folder = lorag.layout.uploads_dir / tenant / uuid.uuid4().hex
        inputs = await _save_uploads(request, folder)
    else:
        inputs = [doc.model_dump() for doc in (await _json_batch(request)).documents]
    try:
        job_id = await asyncio.to_thread(lorag.documents.start_job, tenant, inputs)
    except BaseException:
        _remove(folder)
        raise
    metrics.documents_submitted.labels(tenant).inc(len(inputs))
    if folder is not None:
        tasks.start(_remove_when_done(lorag.jobs, tenant, job_id, folder))
    return to_job(lorag.jobs.get(tenant, job_id))


@router.get("/v1/documents", response_model=schemas.DocumentList,
            responses=schemas.error_responses(400, 401), summary="The caller's documents")
def list_documents(tenant: TenantId, lorag: Lorag, limit: int = Query(100, ge=1, le=1000),
                   offset: int = Query(0, ge=0, le=2**62)) -> schemas.DocumentList:
    documents = lorag.documents.list(tenant, limit=limit + 1, offset=offset)
    return schemas.DocumentList(data=[to_document(d) for d in documents[:limit]],
                                has_more=len(documents) > limit)


@router.get("/v1/documents/{document_id:path}", response_model=schemas.Document,
            responses=schemas.error_responses(400, 401, 404), summary="One document")
def get_document(tenant: TenantId, lorag: Lorag,
                 document_id: str = PathParam(max_length=512)) -> schemas.Document:
    return to_document(lorag.documents.get(tenant, document_id))


@router.delete("/v1/documents/{document_id:path}", response_model=schemas.Deleted,
               responses=schemas.error_responses(400, 401, 404, 409),
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
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def _save_uploads(request: Request, folder: Path) -> list[Path]:
    """Each uploaded file, saved in ``folder`` under its (sanitised) name, which becomes
    its document id."""
    async with request.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            raise InvalidInput("upload one or more files in the form field 'files'", param="files")
        names = [_safe_name(upload.filename, i) for i, upload in enumerate(files)]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise InvalidInput(f"two files are named {name!r}", param=f"files[{i}]")
        folder.mkdir(parents=True)
        for upload, name in zip(files, names):
            with (folder / name).open("wb") as out:
                await asyncio.to_thread(shutil.copyfileobj, upload.file, out)
    return [folder / name for name in names]


async def _remove_when_done(jobs, tenant: str, job_id: str, folder: Path) -> None:
    """Uploaded files are only read by their job: remove them once it has ended."""
    try:
        while jobs.get(tenant, job_id).status in (QUEUED, RUNNING):
            await asyncio.sleep(1.0)
    except NotFound:
        pass  # the tenant was deleted, with its jobs
    finally:
        _remove(folder)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _safe_name(filename: str | None, index: int) -> str:
    name = _UNSAFE.sub("_", Path(filename or "").name).strip(" .")
    if not name:
        raise InvalidInput("every file needs a name", param=f"files[{index}]")
    return name[:200]
