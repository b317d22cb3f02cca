"""A tenant's uploaded files (OpenAI's Files API): a catalog row each, the bytes under
``<tenant>/files/<file id>/<name>``.

A file is inert: it becomes searchable when attached to a vector store (ingested as a
document) and trains an adapter when a fine-tuning job names it. The bytes are written
to a temporary name, fsynced and renamed before the row is committed, so a listed file
always has its content; deleting the tenant deletes its files with its folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from lorag.core.db import Database
from lorag.core.errors import InvalidInput, NotFound, PayloadTooLarge
from lorag.core.layout import Layout
from lorag.core.migrations import Migration, migrate, statements
from lorag.core.pages import Page, PageRequest, page

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")
MAX_FILENAME = 200
COPY_BUFFER = 1 << 20

MIGRATIONS = (
    Migration(1, "uploaded files", statements(
        """CREATE TABLE IF NOT EXISTS files (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS files_tenant ON files (tenant_id, created_at)")),
)


class FilePurpose(StrEnum):
    """What a file is for: the purposes lorag has a use for."""

    ASSISTANTS = "assistants"  # attached to vector stores (file_search)
    USER_DATA = "user_data"  # the same use in lorag: documents for retrieval
    FINE_TUNE = "fine-tune"  # chat JSONL training data of a fine-tuning job


@dataclass(frozen=True)
class StoredFile:
    id: str
    tenant_id: str
    filename: str
    purpose: FilePurpose
    bytes: int
    created_at: float
    path: Path  # where the content lies


class FileStore:
    """Uploaded files of tenants. Safe for concurrent use."""

    def __init__(self, db: Database, layout: Layout, *, max_bytes: int):
        self.db = db
        self.layout = layout
        self.max_bytes = max_bytes
        migrate(db, "files", MIGRATIONS)

    def create(self, tenant_id: str, filename: str | None, purpose: str,
               content: BinaryIO) -> StoredFile:
        """Store ``content`` as a new file. Raises InvalidInput (``purpose``, ``file``),
        PayloadTooLarge (``file``) over ``max_bytes``."""
        purpose = parse_purpose(purpose)
        name = safe_filename(filename)
        file_id = f"file-{uuid.uuid4().hex}"
        folder = self.layout.tenant_files(tenant_id) / file_id
        folder.mkdir(parents=True)
        try:
            size = self._write(content, folder / name)
            with self.db.transaction() as conn:
                conn.execute("INSERT INTO files VALUES (?,?,?,?,?,?)",
                             (file_id, tenant_id, name, purpose.value, size, time.time()))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("file stored tenant=%s file=%s bytes=%d purpose=%s", tenant_id, file_id, size,
                 purpose.value)
        return self.get(tenant_id, file_id)

    def _write(self, content: BinaryIO, path: Path) -> int:
        partial = path.with_name(path.name + ".part")
        size = 0
        with partial.open("wb") as out:
            while block := content.read(COPY_BUFFER):
                size += len(block)
                if size > self.max_bytes:
                    raise PayloadTooLarge(f"the file is over the limit of {self.max_bytes} bytes",
                                          param="file")
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
        return size

    def get(self, tenant_id: str, file_id: str, param: str = "file_id") -> StoredFile:
        """The tenant's file; raises NotFound (``param``), also for another tenant's."""
        row = self.db.query_one("SELECT * FROM files WHERE id=? AND tenant_id=?",
                                (file_id, tenant_id))
        if row is None:
            raise NotFound(f"file {file_id!r} not found", param=param)
        return self._file(row)

    def list(self, tenant_id: str, request: PageRequest,
             purpose: str | None = None) -> tuple[list[StoredFile], bool]:
        """A page of the tenant's files, of one purpose when given."""
        where, params = "tenant_id=?", (tenant_id,)
        if purpose is not None:
            where, params = where + " AND purpose=?", (tenant_id, parse_purpose(purpose).value)
        found: Page = page(self.db, "files", where, params, request)
        return [self._file(row) for row in found.rows], found.has_more

    def delete(self, tenant_id: str, file_id: str) -> None:
        """Delete the file's row and content; raises NotFound (``file_id``)."""
        stored = self.get(tenant_id, file_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM files WHERE id=? AND tenant_id=?", (file_id, tenant_id))
        shutil.rmtree(stored.path.parent, ignore_errors=True)
        log.info("file deleted tenant=%s file=%s", tenant_id, file_id)

    def _file(self, row: sqlite3.Row) -> StoredFile:
        path = self.layout.tenant_files(row["tenant_id"]) / row["id"] / row["filename"]
        return StoredFile(row["id"], row["tenant_id"], row["filename"], FilePurpose(row["purpose"]),
                          row["bytes"], row["created_at"], path)


def parse_purpose(value: str) -> FilePurpose:
    """Raises InvalidInput (``purpose``) for a purpose lorag has no use for."""
    try:
        return FilePurpose(value)
    except ValueError:
        raise InvalidInput(f"purpose must be one of {', '.join(FilePurpose)}; got {value!r} "
                           "(lorag has no batch, vision or evals API)", param="purpose") from None


def safe_filename(filename: str | None) -> str:
    """The file's own name, kept to letters, digits and ``._ -``; raises InvalidInput."""
    name = _UNSAFE.sub("_", Path(filename or "").name).strip(" .")
    if not name:
        raise InvalidInput("the file needs a name", param="file")
    return name[:MAX_FILENAME]
