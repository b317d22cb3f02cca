"""Long-running work (ingestion, training) as jobs with one progress object.

``Progress`` drives both a terminal bar (optional) and the job record that the HTTP
job-status endpoint reads; per-item failures are recorded, never fatal.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from lorag.core.db import Database
from lorag.core.errors import NotFound

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    submitted INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant_id, created_at);
CREATE TABLE IF NOT EXISTS job_failures (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    item TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
CANCELLED = "cancelled"  # stopped on request (a training job)


@dataclass
class Job:
    id: str
    tenant_id: str
    kind: str
    status: str
    submitted: int
    completed: int
    failed: int
    result: dict | None
    error: str | None
    created_at: float
    updated_at: float
    failures: list[dict] = field(default_factory=list)


class JobStore:
    def __init__(self, db: Database):
        self.db = db
        db.apply_schema(SCHEMA)

    def create(self, tenant_id: str, kind: str, submitted: int = 0) -> str:
        job_id = uuid.uuid4().hex
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO jobs (id, tenant_id, kind, status, submitted, created_at, "
                         "updated_at) VALUES (?,?,?,?,?,?,?)",
                         (job_id, tenant_id, kind, QUEUED, submitted, now, now))
        return job_id

    def update(self, job_id: str, **fields) -> None:
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{name}=?" for name in fields)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))

    def add_failure(self, job_id: str, item: str, code: str, message: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO job_failures VALUES (?,?,?,?)", (job_id, item, code, message))

    def get(self, tenant_id: str, job_id: str) -> Job:
        """The tenant's job with its failures; raises NotFound (also for another tenant's)."""
        row = self.db.query_one("SELECT * FROM jobs WHERE id=? AND tenant_id=?", (job_id, tenant_id))
        if row is None:
            raise NotFound(f"job {job_id!r} not found", param="job_id")
        failures = self.db.query("SELECT item, code, message FROM job_failures WHERE job_id=?",
                                 (job_id,))
        data = dict(row)
        data["result"] = json.loads(data["result"]) if data["result"] else None
        return Job(**data, failures=[dict(f) for f in failures])

    def list(self, tenant_id: str, limit: int = 100) -> list[Job]:
        rows = self.db.query("SELECT id FROM jobs WHERE tenant_id=? ORDER BY created_at DESC LIMIT ?",
                             (tenant_id, limit))
        return [self.get(tenant_id, r["id"]) for r in rows]

    def fail_interrupted(self) -> int:
        """On start-up: jobs left queued/running by a dead process are marked failed."""
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET status=?, error=?, updated_at=? WHERE status IN (?,?)",
                               (FAILED, "interrupted: the process stopped before the job ended",
                                time.time(), QUEUED, RUNNING))
        return cur.rowcount


class Progress:
    """Counts items done/failed for one job; mirrors them to a bar and the job record.

    The record is written at most every ``flush_seconds`` and at ``finish``.
    """

    def __init__(self, jobs: JobStore | None, job_id: str | None, total: int, *,
                 description: str = "", bar: bool = False, flush_seconds: float = 0.5):
        self.jobs, self.job_id = jobs, job_id
        self.total, self.completed, self.failed = total, 0, 0
        self.failures: list[dict] = []
        self._flush_seconds, self._last_flush = flush_seconds, 0.0
        self._bar = _make_bar(total, description) if bar else None
        self._write(status=RUNNING, submitted=total)

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._tick(n)

    def fail(self, item: str, code: str, message: str) -> None:
        """Record one failed item; the job goes on."""
        self.failed += 1
        self.failures.append({"item": item, "code": code, "message": message})
        if self.jobs and self.job_id:
            self.jobs.add_failure(self.job_id, item, code, message)
        self._tick(1)

    def finish(self, result: dict | None = None, error: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
        status = FAILED if error else SUCCEEDED
        self._write(status=status, completed=self.completed, failed=self.failed,
                    result=result or {}, error=error)

    def _tick(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        if now - self._last_flush >= self._flush_seconds:
            self._last_flush = now
            self._write(completed=self.completed, failed=self.failed)

    def _write(self, **fields) -> None:
        if self.jobs and self.job_id:
            self.jobs.update(self.job_id, **fields)


def _make_bar(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="doc", dynamic_ncols=True)
