"""Tenants and their API keys, in the catalog database.

A key is shown once, when created; only its SHA-256 is stored (keys are 256-bit
random, so a fast hash is safe and lets the lookup use an index).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import shutil
import time
from dataclasses import dataclass

from lorag.core.db import Database
from lorag.core.errors import AuthenticationFailed, Conflict, NotFound
from lorag.core.layout import Layout, check_name

log = logging.getLogger(__name__)

KEY_PREFIX = "lrg-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Tenant:
    id: str
    display_name: str
    created_at: float


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued key: ``secret`` is never stored and cannot be shown again."""

    id: int
    tenant_id: str
    secret: str
    hint: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TenantStore:
    def __init__(self, db: Database, layout: Layout):
        self.db = db
        self.layout = layout
        # Called with the tenant id before its rows are deleted: stores that must act on
        # their rows (adapters unloading from the engine) do it here.
        self.before_delete: list = []
        # Called with the tenant id after its rows are deleted, before its files are:
        # caches (loaded indexes, open stores) let go of the tenant here.
        self.on_delete: list = []
        # Key changes are recorded here when set (lorag.core.audit.AuditLog).
        self.audit = None
        db.apply_schema(SCHEMA)

    def create(self, tenant_id: str, display_name: str | None = None) -> Tenant:
        """Create a tenant; raises InvalidInput for a bad id, Conflict if it exists."""
        check_name(tenant_id, "tenant")
        tenant = Tenant(tenant_id, display_name or tenant_id, time.time())
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)).fetchone():
                raise Conflict(f"tenant {tenant_id!r} already exists", param="tenant")
            self._remove_files(tenant_id)  # a deleted tenant's, if a crash kept them
            conn.execute("INSERT INTO tenants VALUES (?,?,?)",
                         (tenant.id, tenant.display_name, tenant.created_at))
        log.info("created tenant=%s", tenant_id)
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        """The tenant; raises NotFound."""
        row = self.db.query_one("SELECT * FROM tenants WHERE id=?", (tenant_id,))
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
        return Tenant(row["id"], row["display_name"], row["created_at"])

    def exists(self, tenant_id: str) -> bool:
        return self.db.query_one("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)) is not None

    def list(self) -> list[Tenant]:
        rows = self.db.query("SELECT * FROM tenants ORDER BY id")
        return [Tenant(r["id"], r["display_name"], r["created_at"]) for r in rows]

    def delete(self, tenant_id: str) -> None:
        """Delete the tenant, its keys and rows (cascade), then its files; raises NotFound."""
        self.get(tenant_id)  # NotFound before any callback acts
        for callback in self.before_delete:
            callback(tenant_id)
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM tenants WHERE id=?", (tenant_id,)).rowcount == 0:
                raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
        for callback in self.on_delete:
            callback(tenant_id)
        self._remove_files(tenant_id)
        log.info("deleted tenant=%s", tenant_id)

    def _remove_files(self, tenant_id: str) -> None:
        for folder in (self.layout.tenant_dir(tenant_id), self.layout.adapters_dir / tenant_id):
            shutil.rmtree(folder, ignore_errors=True)

    def issue_key(self, tenant_id: str) -> IssuedKey:
        """A new API key for the tenant; the secret is returned here and only here."""
        self.get(tenant_id)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        hint = secret[:8] + "..." + secret[-4:]
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO api_keys (tenant_id, key_hash, hint, created_at) VALUES (?,?,?,?)",
                (tenant_id, hash_key(secret), hint, time.time()))
            if self.audit is not None:
                self.audit.record(conn, tenant_id=tenant_id, action="key.issue",
                                  subject=f"key:{cur.lastrowid}", after={"hint": hint})
        log.info("issued key id=%s tenant=%s", cur.lastrowid, tenant_id)
        return IssuedKey(cur.lastrowid, tenant_id, secret, hint)

    def list_keys(self, tenant_id: str) -> list[dict]:
        rows = self.db.query(
            "SELECT id, hint, created_at FROM api_keys WHERE tenant_id=? ORDER BY id", (tenant_id,))
        return [dict(r) for r in rows]

    def revoke_key(self, tenant_id: str, key_id: int) -> None:
        """Revoke one key of the tenant; raises NotFound."""
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM api_keys WHERE id=? AND tenant_id=?", (key_id, tenant_id))
            if cur.rowcount == 0:
                raise NotFound(f"key {key_id} not found", param="key_id")
            if self.audit is not None:
                self.audit.record(conn, tenant_id=tenant_id, action="key.revoke",
                                  subject=f"key:{key_id}")

    def key_id(self, secret: str) -> int | None:
        """The id of the key ``secret`` (None: no such key); for attributing changes."""
        row = self.db.query_one("SELECT id FROM api_keys WHERE key_hash=?", (hash_key(secret),))
        return row["id"] if row else None

    def authenticate(self, secret: str | None) -> str:
        """The tenant id owning ``secret``; raises AuthenticationFailed."""
        if not secret:
            raise AuthenticationFailed("missing API key (Authorization: Bearer <key>)")
        digest = hash_key(secret)
        row = self.db.query_one("SELECT tenant_id, key_hash FROM api_keys WHERE key_hash=?", (digest,))
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthenticationFailed("invalid API key")
        return row["tenant_id"]
