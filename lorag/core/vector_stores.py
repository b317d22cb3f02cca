"""The catalog of vector stores (OpenAI's Vector Stores API): named collections inside a
tenant's index, and which files each holds.

A vector store owns no index of its own: each attached file is a document of the
tenant's index whose metadata names the store (``vector_store_id``) and the file
(``file_id``), so a search restricted to a store is the tenant's hybrid search with a
metadata filter. This module keeps the rows; ``lorag/app/vector_stores.py`` joins them
with ingestion and search.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass

from lorag.core.db import Database
from lorag.core.errors import NotFound
from lorag.core.migrations import Migration, migrate, statements
from lorag.core.pages import PageRequest, page

MIGRATIONS = (
    Migration(1, "vector stores and their files", statements(
        """CREATE TABLE IF NOT EXISTS vector_stores (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            last_active_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS vector_stores_tenant ON vector_stores (tenant_id, created_at)",
        """CREATE TABLE IF NOT EXISTS vector_store_files (
            id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL,
            attributes TEXT NOT NULL DEFAULT '{}',
            job_id TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (vector_store_id, id)
        )""",
        "CREATE INDEX IF NOT EXISTS vector_store_files_file ON vector_store_files (id)")),
)


@dataclass(frozen=True)
class VectorStoreRow:
    id: str
    tenant_id: str
    name: str | None
    metadata: dict
    created_at: float
    last_active_at: float


@dataclass(frozen=True)
class VectorStoreFileRow:
    id: str  # the file's id
    vector_store_id: str
    tenant_id: str
    attributes: dict
    job_id: str | None  # the ingestion job that read it into the index
    created_at: float


class VectorStoreCatalog:
    """Rows of vector stores and their files. Safe for concurrent use."""

    def __init__(self, db: Database):
        self.db = db
        migrate(db, "vector_stores", MIGRATIONS)

    def create(self, tenant_id: str, name: str | None, metadata: dict) -> VectorStoreRow:
        store_id = f"vs_{uuid.uuid4().hex}"
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO vector_stores VALUES (?,?,?,?,?,?)",
                         (store_id, tenant_id, name, json.dumps(metadata), now, now))
        return self.get(tenant_id, store_id)

    def get(self, tenant_id: str, store_id: str,
            param: str = "vector_store_id") -> VectorStoreRow:
        """Raises NotFound (``param``), also for another tenant's store."""
        row = self.db.query_one("SELECT * FROM vector_stores WHERE id=? AND tenant_id=?",
                                (store_id, tenant_id))
        if row is None:
            raise NotFound(f"vector store {store_id!r} not found", param=param)
        return _store(row)

    def list(self, tenant_id: str, request: PageRequest) -> tuple[list[VectorStoreRow], bool]:
        found = page(self.db, "vector_stores", "tenant_id=?", (tenant_id,), request)
        return [_store(row) for row in found.rows], found.has_more

    def update(self, tenant_id: str, store_id: str, *, name: str | None = None,
               metadata: dict | None = None) -> VectorStoreRow:
        current = self.get(tenant_id, store_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE vector_stores SET name=?, metadata=?, last_active_at=? "
                         "WHERE id=? AND tenant_id=?",
                         (current.name if name is None else name,
                          json.dumps(current.metadata if metadata is None else metadata),
                          time.time(), store_id, tenant_id))
        return self.get(tenant_id, store_id)

    def touch(self, tenant_id: str, store_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE vector_stores SET last_active_at=? WHERE id=? AND tenant_id=?",
                         (time.time(), store_id, tenant_id))

    def delete(self, tenant_id: str, store_id: str) -> None:
        """Delete the store's row and its file rows; raises NotFound (``vector_store_id``)."""
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM vector_stores WHERE id=? AND tenant_id=?",
                            (store_id, tenant_id)).rowcount == 0:
                raise NotFound(f"vector store {store_id!r} not found", param="vector_store_id")

    # -- files of a store -------------------------------------------------------------------

    def add_file(self, tenant_id: str, store_id: str, file_id: str,
                 attributes: dict) -> tuple[VectorStoreFileRow, bool]:
        """Attach a file (once): the row, and whether it is new."""
        with self.db.transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO vector_store_files VALUES (?,?,?,?,?,?)",
                (file_id, store_id, tenant_id, json.dumps(attributes), None,
                 time.time())).rowcount == 1
        return self.file(tenant_id, store_id, file_id), inserted

    def set_file(self, tenant_id: str, store_id: str, file_id: str, *,
                 job_id: str | None = None, attributes: dict | None = None) -> None:
        current = self.file(tenant_id, store_id, file_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE vector_store_files SET job_id=?, attributes=? "
                         "WHERE vector_store_id=? AND id=? AND tenant_id=?",
                         (job_id or current.job_id,
                          json.dumps(current.attributes if attributes is None else attributes),
                          store_id, file_id, tenant_id))

    def file(self, tenant_id: str, store_id: str, file_id: str) -> VectorStoreFileRow:
        """Raises NotFound (``file_id``) when the file is not in the tenant's store."""
        row = self.db.query_one("SELECT * FROM vector_store_files WHERE vector_store_id=? "
                                "AND id=? AND tenant_id=?", (store_id, file_id, tenant_id))
        if row is None:
            raise NotFound(f"file {file_id!r} is not in vector store {store_id!r}",
                           param="file_id")
        return _file(row)

    def files(self, tenant_id: str, store_id: str,
              request: PageRequest | None = None) -> tuple[list[VectorStoreFileRow], bool]:
        """A page of the store's files (all of them without ``request``)."""
        where, params = "vector_store_id=? AND tenant_id=?", (store_id, tenant_id)
        if request is None:
            rows = self.db.query(f"SELECT * FROM vector_store_files WHERE {where} "
                                 "ORDER BY created_at", params)
            return [_file(row) for row in rows], False
        found = page(self.db, "vector_store_files", where, params, request)
        return [_file(row) for row in found.rows], found.has_more

    def stores_of_file(self, tenant_id: str, file_id: str) -> list[str]:
        rows = self.db.query("SELECT vector_store_id FROM vector_store_files WHERE id=? "
                             "AND tenant_id=?", (file_id, tenant_id))
        return [row[0] for row in rows]

    def remove_file(self, tenant_id: str, store_id: str, file_id: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM vector_store_files WHERE vector_store_id=? AND id=? "
                            "AND tenant_id=?", (store_id, file_id, tenant_id)).rowcount == 0:
                raise NotFound(f"file {file_id!r} is not in vector store {store_id!r}",
                               param="file_id")


def _store(row: sqlite3.Row) -> VectorStoreRow:
    return VectorStoreRow(row["id"], row["tenant_id"], row["name"], json.loads(row["metadata"]),
                          row["created_at"], row["last_active_at"])


def _file(row: sqlite3.Row) -> VectorStoreFileRow:
    return VectorStoreFileRow(row["id"], row["vector_store_id"], row["tenant_id"],
                              json.loads(row["attributes"]), row["job_id"], row["created_at"])
