"""Files as OpenAI shapes them; reading the multipart upload."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from lorag.core.errors import InvalidInput
from lorag.core.files import StoredFile
from server.files import schemas

FIELDS = ("file", "purpose")


def to_file(stored: StoredFile) -> schemas.FileObject:
    return schemas.FileObject(id=stored.id, bytes=stored.bytes, created_at=int(stored.created_at),
                              filename=stored.filename, purpose=stored.purpose)


def file_list(files: list[StoredFile], has_more: bool) -> schemas.FileList:
    return schemas.FileList(data=[to_file(f) for f in files],
                            first_id=files[0].id if files else None,
                            last_id=files[-1].id if files else None, has_more=has_more)


async def upload_fields(request: Request) -> tuple[UploadFile, str, dict]:
    """The form's ``file`` and ``purpose``; every other field is refused (400 naming it),
    never ignored. The caller closes the returned form."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("upload the file as multipart/form-data", param="file")
    form = await request.form(max_files=1, max_fields=4)
    extra = next((key for key in form.keys() if key not in FIELDS), None)
    if extra is not None:
        await form.close()
        raise InvalidInput(f"{extra}: unrecognized field (expiry is not supported)", param=extra)
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise InvalidInput("the form needs a file in the field 'file'", param="file")
    if not isinstance(purpose, str):
        await form.close()
        raise InvalidInput("the form needs a 'purpose'", param="purpose")
    return upload, purpose, form
