"""Stored responses (OpenAI's Responses API): each keeps the conversation it ended, so a
later request naming it as ``previous_response_id`` continues from there, and the
response object as it was returned, for ``GET /v1/responses/{id}``."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from lorag.core.db import Database
from lorag.core.errors import NotFound
from lorag.core.migrations import Migration, migrate, statements

MIGRATIONS = (
    Migration(1, "stored responses", statements(
        """CREATE TABLE IF NOT EXISTS responses (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            created_at REAL NOT NULL,
            previous_response_id TEXT,
            conversation TEXT NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS responses_tenant ON responses (tenant_id, created_at)")),
)


@dataclass(frozen=True)
class StoredResponse:
    id: str
    tenant_id: str
    model: str
    created_at: float
    previous_response_id: str | None
    conversation: list[dict]  # every user and assistant turn up to and with this answer
    body: dict  # the response object as returned


class ResponseStore:
    """Responses of tenants. Safe for concurrent use."""

    def __init__(self, db: Database):
        self.db = db
        migrate(db, "responses", MIGRATIONS)

    def save(self, response: StoredResponse) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO responses VALUES (?,?,?,?,?,?,?)",
                         (response.id, response.tenant_id, response.model, response.created_at,
                          response.previous_response_id, json.dumps(response.conversation),
                          json.dumps(response.body)))

    def get(self, tenant_id: str, response_id: str, param: str = "response_id") -> StoredResponse:
        """Raises NotFound (``param``), also for another tenant's response."""
        row = self.db.query_one("SELECT * FROM responses WHERE id=? AND tenant_id=?",
                                (response_id, tenant_id))
        if row is None:
            raise NotFound(f"response {response_id!r} not found", param=param)
        return _response(row)

    def delete(self, tenant_id: str, response_id: str) -> None:
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM responses WHERE id=? AND tenant_id=?",
                            (response_id, tenant_id)).rowcount == 0:
                raise NotFound(f"response {response_id!r} not found", param="response_id")


def _response(row: sqlite3.Row) -> StoredResponse:
    return StoredResponse(row["id"], row["tenant_id"], row["model"], row["created_at"],
                          row["previous_response_id"], json.loads(row["conversation"]),
                          json.loads(row["body"]))
