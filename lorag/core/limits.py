"""Per-tenant limit overrides and the usage ledger, in the catalog (``lorag.db``).

An override is a partial set of limit values (``{"requests_per_minute": 60}``); the
fields a tenant does not override take the defaults of the settings. Values are checked
by the application (``lorag/app/limits``) before they get here; this store keeps them.

The usage ledger counts, per tenant and UTC day, what the tenant used: chat requests
and tokens, ingested documents and bytes. It is what the daily quotas read, and what
billing would read.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from lorag.core.db import Database
from lorag.core.errors import NotFound
from lorag.core.migrations import Migration, migrate, statements

log = logging.getLogger(__name__)

USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "documents", "bytes")

MIGRATIONS = (
    Migration(1, "tenant limits and usage", statements("""
        CREATE TABLE IF NOT EXISTS tenant_limits (
            tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
            overrides TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""", """
        CREATE TABLE IF NOT EXISTS tenant_usage (
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            day TEXT NOT NULL,
            requests INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            documents INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, day)
        )""")),
)


def utc_day(at: float | None = None) -> str:
    """The UTC day of ``at`` (default: now) as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


@dataclass(frozen=True)
class Usage:
    """What a tenant used on one day (or in total, ``day`` None)."""

    tenant_id: str
    day: str | None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    documents: int = 0
    bytes: int = 0

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("tenant_id", "day", *USAGE_FIELDS)}


class LimitStore:
    """Overrides and usage rows; the tenants table must exist (``TenantStore``)."""

    def __init__(self, db: Database):
        self.db = db
        migrate(db, "limits", MIGRATIONS)

    def overrides(self, tenant_id: str) -> dict:
        """The tenant's overrides (``{}``: none)."""
        row = self.db.query_one("SELECT overrides FROM tenant_limits WHERE tenant_id=?", (tenant_id,))
        return json.loads(row["overrides"]) if row else {}

    def all_overrides(self) -> dict[str, dict]:
        rows = self.db.query("SELECT tenant_id, overrides FROM tenant_limits")
        return {row["tenant_id"]: json.loads(row["overrides"]) for row in rows}

    def set_overrides(self, tenant_id: str, overrides: dict) -> None:
        """Replace the tenant's overrides (``{}`` removes them); raises NotFound (param
        ``tenant``)."""
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)).fetchone():
                raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
            if overrides:
                conn.execute("INSERT INTO tenant_limits VALUES (?,?,?) ON CONFLICT(tenant_id) "
                             "DO UPDATE SET overrides=excluded.overrides, updated_at=excluded.updated_at",
                             (tenant_id, json.dumps(overrides, sort_keys=True), time.time()))
            else:
                conn.execute("DELETE FROM tenant_limits WHERE tenant_id=?", (tenant_id,))
        log.info("limits set tenant=%s overrides=%s", tenant_id, overrides)

    def add_usage(self, tenant_id: str, day: str, **counts: int) -> None:
        """Add ``counts`` (names from USAGE_FIELDS) to the tenant's row of ``day``; a
        tenant deleted meanwhile is ignored."""
        names = [name for name in USAGE_FIELDS if counts.get(name)]
        if not names:
            return
        sets = ", ".join(f"{n}={n}+excluded.{n}" for n in names)
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)).fetchone():
                return
            conn.execute(f"INSERT INTO tenant_usage (tenant_id, day, {', '.join(names)}) "
                         f"VALUES (?, ?, {', '.join('?' for _ in names)}) "
                         f"ON CONFLICT(tenant_id, day) DO UPDATE SET {sets}",
                         (tenant_id, day, *(counts[n] for n in names)))

    def usage(self, tenant_id: str, day: str | None = None) -> Usage:
        """The tenant's usage on ``day``, or over all days (``day`` None)."""
        sums = ", ".join(f"COALESCE(SUM({n}), 0) AS {n}" for n in USAGE_FIELDS)
        where, params = ("tenant_id=? AND day=?", (tenant_id, day)) if day else ("tenant_id=?", (tenant_id,))
        row = self.db.query_one(f"SELECT {sums} FROM tenant_usage WHERE {where}", params)
        return Usage(tenant_id, day, **{n: int(row[n]) for n in USAGE_FIELDS})

    def usage_totals(self) -> list[Usage]:
        """Every tenant's usage over all days (for the metrics)."""
        sums = ", ".join(f"SUM({n}) AS {n}" for n in USAGE_FIELDS)
        rows = self.db.query(f"SELECT tenant_id, {sums} FROM tenant_usage GROUP BY tenant_id")
        return [Usage(r["tenant_id"], None, **{n: int(r[n]) for n in USAGE_FIELDS}) for r in rows]
