"""Admin: a tenant's LoRA adapters: upload or register a version, list, delete."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import File, Form, Query, UploadFile, status

from lorag.core.errors import InvalidInput, NotFound
from lorag.core.layout import check_name
from server.admin import schemas
from server.admin.common import admin_router
from server.deps import Lorag
from server.errors import params_renamed

router = admin_router()

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def to_adapter(version) -> schemas.AdapterVersion:
    return schemas.AdapterVersion(**version.to_dict())


@router.post("/tenants/{tenant}/adapters", status_code=status.HTTP_201_CREATED,
             response_model=schemas.AdapterVersion,
             responses=schemas.error_responses(400, 404, 413),
             summary="Upload an adapter archive (.zip, .tar, .tar.gz of a PEFT LoRA folder) "
                     "as the next version of `name`")
async def upload_adapter(tenant: str, name: Annotated[str, Form()],
                         file: Annotated[UploadFile, File()], lorag: Lorag) -> schemas.AdapterVersion:
    check_name(name, "name")
    suffix = next((s for s in ARCHIVE_SUFFIXES if (file.filename or "").lower().endswith(s)), None)
    if suffix is None:
        raise InvalidInput(f"file must be one of {', '.join(ARCHIVE_SUFFIXES)}", param="file")
    staging = lorag.layout.uploads_dir / ".adapters"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        archive = Path(tmp) / f"adapter{suffix}"
        with archive.open("wb") as out:
            await asyncio.to_thread(shutil.copyfileobj, file.file, out)
        with params_renamed(archive="file", adapter="name"):
            version = await asyncio.to_thread(lorag.adapters.register, tenant, name, archive)
    return to_adapter(version)


@router.post("/tenants/{tenant}/adapters/register", status_code=status.HTTP_201_CREATED,
             response_model=schemas.AdapterVersion,
             responses=schemas.error_responses(400, 403, 404, 413),
             summary="Register an adapter folder or archive on the server (it is copied); only "
                     "from the folders `adapters.import_roots` lists (403 elsewhere)")
async def register_adapter(tenant: str, body: schemas.AdapterRegister,
                           lorag: Lorag) -> schemas.AdapterVersion:
    with params_renamed(adapter="name", archive="path"):
        version = await asyncio.to_thread(lorag.adapters.register_import, tenant, body.name,
                                          body.path)
    return to_adapter(version)


@router.get("/tenants/{tenant}/adapters", response_model=schemas.AdapterList,
            responses=schemas.error_responses(404), summary="Every version of a tenant's adapters")
def list_adapters(tenant: str, lorag: Lorag) -> schemas.AdapterList:
    lorag.tenants.get(tenant)
    return schemas.AdapterList(data=[to_adapter(v) for v in lorag.adapters.list(tenant)])


@router.get("/tenants/{tenant}/adapters/{name}", response_model=schemas.AdapterList,
            responses=schemas.error_responses(404), summary="The versions of one adapter")
def list_versions(tenant: str, name: str, lorag: Lorag) -> schemas.AdapterList:
    versions = lorag.adapters.list(tenant, name)
    if not versions:
        raise NotFound(f"adapter {name!r} not found", param="name")
    return schemas.AdapterList(data=[to_adapter(v) for v in versions])


@router.delete("/tenants/{tenant}/adapters/{name}", response_model=schemas.AdapterDeleted,
               responses=schemas.error_responses(400, 404),
               summary="Delete every version of an adapter (or one, with ?version=)")
def delete_adapter(tenant: str, name: str, lorag: Lorag,
                   version: int | None = Query(None, ge=1, le=2**62)) -> schemas.AdapterDeleted:
    with params_renamed(adapter="name"):
        removed = lorag.adapters.delete(tenant, name, version)
    return schemas.AdapterDeleted(deleted=[to_adapter(v) for v in removed])
