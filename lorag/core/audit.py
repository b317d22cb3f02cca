"""A tamper-evident audit log of changes: brands, aliases, splits, promotions, rollbacks
and keys, each with who (the key id), when, before and after.

Records form one hash chain: each carries the SHA-256 of the previous record's hash and
its own canonical content, so ``verify()`` finds a record that was edited, removed or
inserted. A record is written in the same transaction as the change it describes, so
there is never a change without its record or a record without its change.

Who acts is a context variable set where a request or command starts (``acting_as``):
``key:<id>`` for a tenant key, ``admin`` for the admin key, ``cli:<user>`` for the
command line, ``system:<what>`` for lorag itself (an automatic rollback).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from lorag.core.db import Database
from lorag.core.migrations import Migration, migrate, statements

GENESIS = "0" * 64

MIGRATIONS = (
    Migration(1, "audit log", statements("""
        CREATE TABLE IF NOT EXISTS audit_log (
            seq INTEGER PRIMARY KEY,
            tenant_id TEXT,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            before TEXT,
            after TEXT,
            at REAL NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""", "CREATE INDEX IF NOT EXISTS audit_log_tenant ON audit_log (tenant_id, seq)")),
)

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("lorag_actor", default="system")


def current_actor() -> str:
    return _actor.get()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the changes made inside the block to ``actor``."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def set_actor(actor: str) -> None:
    """Attribute this context's changes to ``actor`` (an entry point that owns its context)."""
    _actor.set(actor)


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    tenant_id: str | None
    actor: str
    action: str
    subject: str
    before: Any
    after: Any
    at: float
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        return {"seq": self.seq, "tenant": self.tenant_id, "actor": self.actor,
                "action": self.action, "subject": self.subject, "before": self.before,
                "after": self.after, "at": self.at, "prev_hash": self.prev_hash,
                "hash": self.hash}


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    bad_seq: int | None = None
    reason: str | None = None
    head: str | None = None  # the last record's hash: keep it elsewhere to catch truncation

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "bad_seq": self.bad_seq,
                "reason": self.reason, "head": self.head}


def record_hash(prev_hash: str, seq: int, tenant_id: str | None, actor: str, action: str,
                subject: str, before: str | None, after: str | None, at: float) -> str:
    content = json.dumps([prev_hash, seq, tenant_id, actor, action, subject, before, after,
                          repr(at)], separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class AuditLog:
    """Append-only, hash-chained records in the catalog. Safe for concurrent use: a record
    is appended inside its change's write transaction, which serializes the chain."""

    def __init__(self, db: Database):
        self.db = db
        migrate(db, "audit", MIGRATIONS)

    def record(self, conn: sqlite3.Connection, *, tenant_id: str | None, action: str,
               subject: str, before: Any = None, after: Any = None,
               actor: str | None = None) -> None:
        """Append a record inside the caller's open transaction ``conn``."""
        last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        who, at = actor or current_actor(), time.time()
        b, a = _dump(before), _dump(after)
        digest = record_hash(prev, seq, tenant_id, who, action, subject, b, a, at)
        conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (seq, tenant_id, who, action, subject, b, a, at, prev, digest))

    def list(self, tenant_id: str | None = None, *, limit: int = 100,
             after_seq: int = 0) -> list[AuditRecord]:
        """Records in order (of one tenant only when ``tenant_id`` is given)."""
        sql, params = "SELECT * FROM audit_log WHERE seq > ?", [after_seq]
        if tenant_id is not None:
            sql, params = sql + " AND tenant_id = ?", params + [tenant_id]
        rows = self.db.query(sql + " ORDER BY seq LIMIT ?", tuple(params + [limit]))
        return [AuditRecord(r["seq"], r["tenant_id"], r["actor"], r["action"], r["subject"],
                            _load(r["before"]), _load(r["after"]), r["at"], r["prev_hash"],
                            r["hash"]) for r in rows]

    def verify(self) -> Verification:
        """Walk the whole chain; the first record whose link or content does not match
        names where it was edited, removed or inserted."""
        prev, expected_seq, count = GENESIS, 1, 0
        for r in self.db.connection().execute("SELECT * FROM audit_log ORDER BY seq"):
            count += 1
            if r["seq"] != expected_seq:
                return Verification(False, count, r["seq"], f"record {expected_seq} is missing")
            if r["prev_hash"] != prev:
                return Verification(False, count, r["seq"], "the link to the previous record "
                                    "does not match (a record before it was changed or removed)")
            digest = record_hash(prev, r["seq"], r["tenant_id"], r["actor"], r["action"],
                                 r["subject"], r["before"], r["after"], r["at"])
            if digest != r["hash"]:
                return Verification(False, count, r["seq"], "the record's content does not "
                                    "match its hash (it was edited)")
            prev, expected_seq = r["hash"], expected_seq + 1
        return Verification(True, count, head=None if count == 0 else prev)
