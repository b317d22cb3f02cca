"""Fine-tuning jobs (OpenAI's fine-tuning API) as the catalog records them: each names
the training job that runs it (``jobs``), the uploaded training file, the adapter name
the result is registered under, and the method and hyperparameters it was given.
Status, progress and the resulting version are the training job's."""

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
    Migration(1, "fine-tuning jobs", statements(
        """CREATE TABLE IF NOT EXISTS fine_tuning_jobs (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            job_id TEXT NOT NULL,
            model TEXT NOT NULL,
            training_file TEXT NOT NULL,
            adapter TEXT NOT NULL,
            method TEXT NOT NULL,
            hyperparameters TEXT NOT NULL,
            seed INTEGER NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS fine_tuning_jobs_tenant ON fine_tuning_jobs "
        "(tenant_id, created_at)")),
)


@dataclass(frozen=True)
class FineTuningRow:
    id: str
    tenant_id: str
    job_id: str  # the training job (lorag/core/jobs.py)
    model: str  # the base model's id
    training_file: str
    adapter: str  # the adapter name the result is registered under
    method: str
    hyperparameters: dict
    seed: int
    metadata: dict
    created_at: float


class FineTuningCatalog:
    def __init__(self, db: Database):
        self.db = db
        migrate(db, "fine_tuning", MIGRATIONS)

    def create(self, tenant_id: str, *, job_id: str, model: str, training_file: str,
               adapter: str, method: str, hyperparameters: dict, seed: int,
               metadata: dict) -> FineTuningRow:
        row_id = f"ftjob-{uuid.uuid4().hex}"
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO fine_tuning_jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (row_id, tenant_id, job_id, model, training_file, adapter, method,
                          json.dumps(hyperparameters), seed, json.dumps(metadata), time.time()))
        return self.get(tenant_id, row_id)

    def get(self, tenant_id: str, row_id: str) -> FineTuningRow:
        """Raises NotFound (``fine_tuning_job_id``), also for another tenant's job."""
        row = self.db.query_one("SELECT * FROM fine_tuning_jobs WHERE id=? AND tenant_id=?",
                                (row_id, tenant_id))
        if row is None:
            raise NotFound(f"fine-tuning job {row_id!r} not found", param="fine_tuning_job_id")
        return _row(row)

    def list(self, tenant_id: str, request: PageRequest) -> tuple[list[FineTuningRow], bool]:
        found = page(self.db, "fine_tuning_jobs", "tenant_id=?", (tenant_id,), request)
        return [_row(r) for r in found.rows], found.has_more


def _row(row: sqlite3.Row) -> FineTuningRow:
    return FineTuningRow(row["id"], row["tenant_id"], row["job_id"], row["model"],
                         row["training_file"], row["adapter"], row["method"],
                         json.loads(row["hyperparameters"]), row["seed"],
                         json.loads(row["metadata"]), row["created_at"])
