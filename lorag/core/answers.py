"""Stored answers, their feedback and the per-target readout, in the catalog.

A stored answer is a chat completion kept in OpenAI's own shape (the completion object
and the request's messages) with its provenance: brand, target, the adapter version and
its weights' sha256, the chunks and scores the model was given, sampling, latency.
Shadow answers (a shadow target's copy of a request) are stored with ``shadow_of`` set
to the answer they shadow and are never listed or returned by the OpenAI routes.

Feedback is one rating (+1 / -1) per stored answer with an optional comment and tags:
giving the same rating again changes nothing, a different one is a Conflict.

The readout counts, per tenant, brand, target and adapter version: requests, errors,
latency, tokens, feedback and groundedness (the grounding guard's score of each answer
that had one: its sum and count, so the mean is exact over any number of processes). Every query here is scoped by tenant: one tenant never
sees another's rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Sequence

from lorag.core.db import Database
from lorag.core.errors import Conflict, InvalidInput, NotFound
from lorag.core.migrations import Migration, has_column, migrate, statements

MAX_LIST = 100
MAX_COMMENT = 4000
MAX_TAGS = 16

STORED_COLUMNS = ("id", "tenant_id", "brand", "created_at", "target", "role", "adapter",
                  "adapter_version", "shadow_of", "metadata", "completion", "messages",
                  "provenance", "groundedness")


def _groundedness(conn: sqlite3.Connection) -> None:
    """Answers keep the grounding guard's score (NULL: the brand's guard was off, or the
    answer had no sentence); the readout adds up the scores and counts them."""
    for table, column, kind in (("stored_answers", "groundedness", "REAL"),
                                ("target_readout", "groundedness_sum", "REAL NOT NULL DEFAULT 0"),
                                ("target_readout", "groundedness_count",
                                 "INTEGER NOT NULL DEFAULT 0")):
        if not has_column(conn, table, column):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


MIGRATIONS = (
    Migration(1, "stored answers, feedback, target readout", statements(
        """CREATE TABLE IF NOT EXISTS stored_answers (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            brand TEXT NOT NULL,
            created_at REAL NOT NULL,
            target TEXT,
            role TEXT,
            adapter TEXT,
            adapter_version INTEGER,
            shadow_of TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            completion TEXT NOT NULL,
            messages TEXT NOT NULL,
            provenance TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS stored_answers_tenant ON stored_answers (tenant_id, created_at)",
        "CREATE INDEX IF NOT EXISTS stored_answers_shadow ON stored_answers (shadow_of)",
        """CREATE TABLE IF NOT EXISTS feedback (
            answer_id TEXT PRIMARY KEY REFERENCES stored_answers(id) ON DELETE CASCADE,
            tenant_id TEXT NOT NULL,
            rating INTEGER NOT NULL,
            comment TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS target_readout (
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            brand TEXT NOT NULL,
            target TEXT NOT NULL,
            version INTEGER NOT NULL,
            role TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            latency_seconds REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            feedback_up INTEGER NOT NULL DEFAULT 0,
            feedback_down INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, brand, target, version, role)
        )""")),
    Migration(2, "groundedness of stored answers and per target", _groundedness),
)


@dataclass(frozen=True)
class Outcome:
    """One served (or shadow) request of a brand's target, for the readout.
    ``version`` 0 is the base model."""

    tenant_id: str
    brand: str
    target: str
    version: int
    role: str
    error: bool
    latency_seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    groundedness: float | None = None  # None: not scored (guard off, no sentence, error)


@dataclass(frozen=True)
class StoredAnswer:
    id: str
    tenant_id: str
    brand: str
    created_at: float
    target: str | None
    role: str | None
    adapter: str | None
    adapter_version: int | None
    shadow_of: str | None
    metadata: dict
    completion: dict
    messages: list
    provenance: dict
    groundedness: float | None = None  # the grounding guard's score, when it ran


@dataclass(frozen=True)
class Feedback:
    answer_id: str
    rating: int
    comment: str | None
    tags: list[str]
    created_at: float

    def to_dict(self) -> dict:
        return {"id": self.answer_id, "object": "chat.completion.feedback",
                "rating": self.rating, "comment": self.comment, "tags": self.tags,
                "created_at": self.created_at}


def _answer(row: sqlite3.Row) -> StoredAnswer:
    return StoredAnswer(row["id"], row["tenant_id"], row["brand"], row["created_at"],
                        row["target"], row["role"], row["adapter"], row["adapter_version"],
                        row["shadow_of"], json.loads(row["metadata"]),
                        json.loads(row["completion"]), json.loads(row["messages"]),
                        json.loads(row["provenance"]), row["groundedness"])


class AnswerStore:
    """Stored answers, feedback and readout counters of tenants. Safe for concurrent use."""

    def __init__(self, db: Database):
        self.db = db
        migrate(db, "answers", MIGRATIONS)

    # -- answers -----------------------------------------------------------------------

    def save(self, answer: StoredAnswer) -> None:
        """Keep ``answer``; raises Conflict(id) when the id is taken."""
        try:
            with self.db.transaction() as conn:
                conn.execute(f"INSERT INTO stored_answers ({', '.join(STORED_COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(STORED_COLUMNS))})",
                             (answer.id, answer.tenant_id, answer.brand, answer.created_at,
                              answer.target, answer.role, answer.adapter,
                              answer.adapter_version, answer.shadow_of,
                              json.dumps(answer.metadata), json.dumps(answer.completion),
                              json.dumps(answer.messages), json.dumps(answer.provenance),
                              answer.groundedness))
        except sqlite3.IntegrityError:
            raise Conflict(f"answer {answer.id!r} is already stored", param="id") from None

    def get(self, tenant_id: str, answer_id: str, *, shadow: bool = False) -> StoredAnswer:
        """The tenant's stored answer (a served one unless ``shadow``); raises NotFound
        (param ``completion_id``), also for another tenant's."""
        row = self.db.query_one(
            "SELECT * FROM stored_answers WHERE id=? AND tenant_id=? AND "
            + ("shadow_of IS NOT NULL" if shadow else "shadow_of IS NULL"), (answer_id, tenant_id))
        if row is None:
            raise NotFound(f"stored chat completion {answer_id!r} not found",
                           param="completion_id")
        return _answer(row)

    def list(self, tenant_id: str, *, brand: str | None = None,
             metadata: dict[str, str] | None = None, after: str | None = None,
             limit: int = 20, descending: bool = False) -> tuple[list[StoredAnswer], bool]:
        """(answers, has_more): the tenant's served answers by creation time, after the
        answer ``after`` (exclusive), filtered by brand and metadata equality."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}", param="limit")
        sql = "SELECT * FROM stored_answers WHERE tenant_id=? AND shadow_of IS NULL"
        params: list[Any] = [tenant_id]
        if brand is not None:
            sql, params = sql + " AND brand=?", params + [brand]
        for key, value in (metadata or {}).items():
            sql, params = sql + " AND json_extract(metadata, ?) = ?", params + [
                "$." + json.dumps(key), value]
        if after is not None:
            anchor = self.get(tenant_id, after)
            op = "<" if descending else ">"
            sql += f" AND (created_at {op} ? OR (created_at = ? AND id {op} ?))"
            params += [anchor.created_at, anchor.created_at, anchor.id]
        order = "DESC" if descending else "ASC"
        rows = self.db.query(sql + f" ORDER BY created_at {order}, id {order} LIMIT ?",
                             tuple(params + [limit + 1]))
        return [_answer(r) for r in rows[:limit]], len(rows) > limit

    def shadows(self, tenant_id: str, answer_id: str) -> list[StoredAnswer]:
        """The shadow answers of the tenant's answer ``answer_id``."""
        rows = self.db.query("SELECT * FROM stored_answers WHERE tenant_id=? AND shadow_of=? "
                             "ORDER BY created_at", (tenant_id, answer_id))
        return [_answer(r) for r in rows]

    def recent_shadows(self, tenant_id: str, brand: str, limit: int = 20) -> list[StoredAnswer]:
        rows = self.db.query("SELECT * FROM stored_answers WHERE tenant_id=? AND brand=? AND "
                             "shadow_of IS NOT NULL ORDER BY created_at DESC LIMIT ?",
                             (tenant_id, brand, limit))
        return [_answer(r) for r in rows]

    def update_metadata(self, tenant_id: str, answer_id: str, metadata: dict) -> StoredAnswer:
        """Replace the answer's metadata; raises NotFound(completion_id)."""
        self.get(tenant_id, answer_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE stored_answers SET metadata=? WHERE id=? AND tenant_id=?",
                         (json.dumps(metadata), answer_id, tenant_id))
        return self.get(tenant_id, answer_id)

    def delete(self, tenant_id: str, answer_id: str) -> None:
        """Delete the answer, its feedback and its shadows; raises NotFound(completion_id)."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM stored_answers WHERE id=? AND tenant_id=? AND "
                               "shadow_of IS NULL", (answer_id, tenant_id))
            if cur.rowcount == 0:
                raise NotFound(f"stored chat completion {answer_id!r} not found",
                               param="completion_id")
            conn.execute("DELETE FROM stored_answers WHERE shadow_of=? AND tenant_id=?",
                         (answer_id, tenant_id))

    def purge(self, older_than: float) -> int:
        """Delete every answer created before ``older_than`` (epoch seconds); returns how many."""
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM stored_answers WHERE created_at < ?",
                                (older_than,)).rowcount

    # -- feedback ----------------------------------------------------------------------

    def rate(self, tenant_id: str, answer_id: str, rating: int, comment: str | None = None,
             tags: Sequence[str] = ()) -> tuple[Feedback, bool]:
        """(feedback, created): rate the tenant's stored answer. The same rating again
        returns the first one (created False); a different rating, comment or tags raises
        Conflict(rating, code ``feedback_exists``). Raises NotFound(completion_id),
        InvalidInput."""
        _check_feedback(rating, comment, tags)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM stored_answers WHERE id=? AND tenant_id=? AND "
                            "shadow_of IS NULL", (answer_id, tenant_id)).fetchone() is None:
                raise NotFound(f"stored chat completion {answer_id!r} not found",
                               param="completion_id")
            row = conn.execute("SELECT * FROM feedback WHERE answer_id=?", (answer_id,)).fetchone()
            if row is not None:
                existing = _feedback(row)
                if (existing.rating, existing.comment, existing.tags) != (rating, comment, list(tags)):
                    raise Conflict("this answer already has feedback; it cannot be changed",
                                   param="rating", code="feedback_exists")
                return existing, False
            feedback = Feedback(answer_id, rating, comment, list(tags), time.time())
            conn.execute("INSERT INTO feedback VALUES (?,?,?,?,?,?)",
                         (answer_id, tenant_id, rating, comment, json.dumps(feedback.tags),
                          feedback.created_at))
        return feedback, True

    def feedback(self, tenant_id: str, answer_id: str) -> Feedback:
        """The answer's feedback; raises NotFound(completion_id)."""
        row = self.db.query_one("SELECT * FROM feedback WHERE answer_id=? AND tenant_id=?",
                                (answer_id, tenant_id))
        if row is None:
            raise NotFound(f"no feedback for {answer_id!r}", param="completion_id")
        return _feedback(row)

    # -- readout -----------------------------------------------------------------------

    def count(self, outcome: Outcome) -> None:
        """Add one request to its target's readout (its groundedness when scored)."""
        o = outcome
        scored = o.groundedness is not None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO target_readout (tenant_id, brand, target, version, role, requests, "
                "errors, latency_seconds, prompt_tokens, completion_tokens, groundedness_sum, "
                "groundedness_count) "
                "VALUES (?,?,?,?,?,1,?,?,?,?,?,?) ON CONFLICT (tenant_id, brand, target, version, "
                "role) DO UPDATE SET requests=requests+1, errors=errors+excluded.errors, "
                "latency_seconds=latency_seconds+excluded.latency_seconds, "
                "prompt_tokens=prompt_tokens+excluded.prompt_tokens, "
                "completion_tokens=completion_tokens+excluded.completion_tokens, "
                "groundedness_sum=groundedness_sum+excluded.groundedness_sum, "
                "groundedness_count=groundedness_count+excluded.groundedness_count",
                (o.tenant_id, o.brand, o.target, o.version, o.role, int(o.error),
                 o.latency_seconds, o.prompt_tokens, o.completion_tokens,
                 o.groundedness if scored else 0.0, int(scored)))

    def count_feedback(self, answer: StoredAnswer, rating: int) -> None:
        column = "feedback_up" if rating > 0 else "feedback_down"
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE target_readout SET {column}={column}+1 WHERE tenant_id=? AND "
                         "brand=? AND target=? AND version=? AND role=?",
                         (answer.tenant_id, answer.brand, answer.target or "@base",
                          answer.adapter_version or 0, answer.role or "primary"))

    def readout(self, tenant_id: str | None, brand: str | None = None) -> list[dict]:
        """Readout rows (all tenants' when ``tenant_id`` is None: for metrics only)."""
        sql, params = "SELECT * FROM target_readout WHERE 1=1", []
        if tenant_id is not None:
            sql, params = sql + " AND tenant_id=?", params + [tenant_id]
        if brand is not None:
            sql, params = sql + " AND brand=?", params + [brand]
        rows = self.db.query(sql + " ORDER BY tenant_id, brand, role, target, version", tuple(params))
        return [dict(r) for r in rows]


def _feedback(row: sqlite3.Row) -> Feedback:
    return Feedback(row["answer_id"], row["rating"], row["comment"], json.loads(row["tags"]),
                    row["created_at"])


def _check_feedback(rating: Any, comment: Any, tags: Any) -> None:
    if isinstance(rating, bool) or rating not in (1, -1):
        raise InvalidInput("rating must be 1 or -1", param="rating")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidInput(f"comment must be a string of at most {MAX_COMMENT} characters",
                           param="comment")
    if not isinstance(tags, (list, tuple)) or len(tags) > MAX_TAGS or not all(
            isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise InvalidInput(f"tags must be at most {MAX_TAGS} strings of 1-64 characters",
                           param="tags")
