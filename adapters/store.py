"""Adapter stores: validated, versioned copies of tenants' LoRA adapters.

``AdapterStore`` is the Protocol; implementations are registered by name in
``ADAPTER_STORES`` and chosen by ``adapters.store`` (``AdapterSettings.store``). The one
shipped, ``local`` (``LocalAdapterStore``), keeps a catalog in SQLite and the files in

    <data_dir>/adapters/<tenant>/<name>/<version>/   adapter_config.json, adapter_model.safetensors

Registering validates a private staging copy of the caller's folder or archive against
the served base model, then renames it into place and records it in the catalog; lorag
never serves from a caller's path. Each version gets an integer id from an
AUTOINCREMENT column, so an id is never reused for different weights, and version
numbers of a name only grow (even after deletes), so a path is never reused either.
Each adapter has named aliases (``stable``, ``canary``, any other) pointing at versions;
brands serve a target (``name@alias``, ``name@vN`` or ``name@latest``) that
``resolve_target`` turns into a version at request time, so moving an alias switches
every brand serving it atomically. Registering moves no alias, except that an adapter's
first version becomes its ``stable`` (there is nothing else to serve). Each version
records its lineage: base model, weights' sha256, the training report when the folder
carries one, the training data's sha256 (from the report), the version it was trained
from (given, or the report's ``parent_version``), and the promotion gate decisions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from adapters.engines.protocol import AdapterRef
from adapters.settings import AdapterSettings
from adapters.validation import (
    AdapterInfo,
    BaseModelSpec,
    InvalidAdapter,
    check_still_served,
    copy_adapter_files,
    is_archive,
    unpack_archive,
    validate_adapter,
)
from lorag.core.audit import AuditLog
from lorag.core.db import Database
from lorag.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from lorag.core.layout import Layout, check_name
from lorag.core.migrations import Migration, has_column, migrate
from lorag.core.plugins import Registry
from lorag.core.targets import LATEST, STABLE, check_alias, parse_selector

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS adapter_names (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS adapters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    rank INTEGER NOT NULL,
    alpha REAL NOT NULL,
    targets TEXT NOT NULL,
    base_model TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ready',
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, name, version)
);
"""

TRAINING_REPORT = "metrics.json"  # written by adapters.training next to the weights


def _aliases(conn: sqlite3.Connection) -> None:
    """Upgrade: brands served an adapter's newest version; ``stable`` points there now."""
    conn.execute("""CREATE TABLE IF NOT EXISTS adapter_aliases (
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        adapter_id INTEGER NOT NULL REFERENCES adapters(id) ON DELETE CASCADE,
        updated_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, name, alias))""")
    conn.execute(
        "INSERT OR IGNORE INTO adapter_aliases (tenant_id, name, alias, adapter_id, updated_at) "
        "SELECT a.tenant_id, a.name, 'stable', a.id, ? FROM adapters a WHERE a.status='ready' "
        "AND a.version = (SELECT MAX(b.version) FROM adapters b WHERE b.tenant_id=a.tenant_id "
        "AND b.name=a.name AND b.status='ready')", (time.time(),))


def _add_lineage(conn: sqlite3.Connection) -> None:
    if not has_column(conn, "adapters", "lineage"):
        conn.execute("ALTER TABLE adapters ADD COLUMN lineage TEXT NOT NULL DEFAULT '{}'")


MIGRATIONS = (
    Migration(1, "aliases; each adapter's newest version becomes its stable", _aliases),
    Migration(2, "adapter lineage", _add_lineage),
)

UnloadListener = Callable[[AdapterRef], None]


def weights_sha256(folder: Path) -> str:
    """SHA-256 of the adapter's weight files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class AdapterVersion:
    id: int
    tenant_id: str
    name: str
    version: int
    path: Path
    rank: int
    alpha: float
    targets: tuple[str, ...]
    base_model: str
    status: str
    created_at: float
    lineage: dict | None = None

    def ref(self) -> AdapterRef:
        return AdapterRef(self.tenant_id, self.name, self.version, self.id, self.path)

    def to_dict(self) -> dict:
        return {"id": self.id, "tenant": self.tenant_id, "name": self.name,
                "version": self.version, "rank": self.rank, "alpha": self.alpha,
                "targets": list(self.targets), "base_model": self.base_model,
                "status": self.status, "created_at": self.created_at,
                "lineage": self.lineage or {}}


def _row(row) -> AdapterVersion:
    return AdapterVersion(row["id"], row["tenant_id"], row["name"], row["version"],
                          Path(row["path"]), row["rank"], row["alpha"],
                          tuple(json.loads(row["targets"])), row["base_model"], row["status"],
                          row["created_at"], json.loads(row["lineage"] or "{}"))


class AdapterStore(Protocol):
    """Versioned LoRA adapters of tenants: what the engines load, brands name and the
    API manages. Implementations are safe for concurrent use; a version never changes
    once registered and its id is never reused."""

    def register(self, tenant_id: str, name: str, source: Path | str) -> AdapterVersion:
        """Validate ``source`` (a PEFT LoRA folder or a .zip/.tar/.tar.gz of one) against
        the served base model and store it as the next version of ``name``; older
        versions are unloaded from the engines. Raises NotFound (tenant, path),
        InvalidAdapter (param names the failing part), UnsafeArchive / PayloadTooLarge
        (param ``archive``); nothing is stored on error."""
        ...

    def resolve(self, tenant_id: str, name: str) -> AdapterRef:
        """The newest version of ``name`` as an engine sees it; raises NotFound(adapter),
        or Conflict(adapter, code ``adapter_not_served``) when the engine no longer
        applies LoRA to all of its modules."""
        ...

    def get(self, tenant_id: str, name: str, version: int | None = None) -> AdapterVersion:
        """One version (the newest when ``version`` is None); raises NotFound(adapter)."""
        ...

    def exists(self, tenant_id: str, name: str) -> bool:
        """Whether the tenant has an adapter ``name`` (any version); raises nothing."""
        ...

    def delete(self, tenant_id: str, name: str, version: int | None = None) -> list[AdapterVersion]:
        """Delete one version, or every version when ``version`` is None, unloading each
        from the engines; returns what was deleted. Raises NotFound(adapter)."""
        ...

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete every adapter of a tenant being deleted, unloading each; raises nothing
        for a tenant without adapters."""
        ...

    def on_unload(self, listener: UnloadListener) -> None:
        """Call ``listener(ref)`` whenever a version is deleted or superseded, so engines
        drop their copy; a listener that raises is logged, never undoes the change."""
        ...

    def list(self, tenant_id: str, name: str | None = None) -> list[AdapterVersion]:
        """All versions of the tenant's adapters (of ``name`` only, when given), by name
        then version; [] when there are none. Raises nothing."""
        ...

    def resolve_target(self, tenant_id: str, name: str, selector: str) -> AdapterRef:
        """The version ``selector`` names (an alias, ``vN`` or ``latest``) as an engine
        sees it; raises NotFound(adapter, code ``target_not_found``) when the alias or
        version does not exist, InvalidInput(target) for a malformed selector, and what
        ``resolve`` raises."""
        ...

    def aliases(self, tenant_id: str, name: str) -> dict[str, int]:
        """Alias -> version of the adapter; {} when it has none. Raises nothing."""
        ...

    def set_alias(self, tenant_id: str, name: str, alias: str, version: int) -> int | None:
        """Point ``alias`` at ``version`` (recorded in the audit log); returns the version
        it pointed at before (None: new). Raises NotFound(adapter), InvalidInput(alias)."""
        ...

    def remove_alias(self, tenant_id: str, name: str, alias: str) -> int:
        """Remove the alias (recorded); returns the version it pointed at. Raises NotFound."""
        ...

    def add_lineage(self, tenant_id: str, name: str, version: int, **facts) -> dict:
        """Merge ``facts`` into the version's lineage (lists are appended to); returns the
        lineage. Raises NotFound(adapter)."""
        ...


# Each factory takes ``(db, layout, settings, *, max_rank, base_model, served_modules,
# audit)``: the catalog, the data layout, the adapter settings, the largest LoRA rank the
# engine serves, a callable describing the served base model, the modules it wraps with
# LoRA, and the audit log alias changes are recorded in (None: not recorded).
ADAPTER_STORES: Registry[AdapterStore] = Registry("adapter store")


@ADAPTER_STORES.register("local")
class LocalAdapterStore:
    """Adapter versions catalogued in SQLite, their files in the data directory.
    Registers, resolves and deletes adapter versions. Safe for concurrent use.

    ``base_model`` is called (once) to describe the served model for validation, so
    building the store never loads or prepares a model.
    """

    def __init__(self, db: Database, layout: Layout, settings: AdapterSettings, *,
                 max_rank: int, base_model: Callable[[], BaseModelSpec],
                 served_modules: Sequence[str] | None = None, audit: AuditLog | None = None):
        self.db = db
        self.audit = audit
        self.layout = layout
        self.settings = settings
        self.max_rank = max_rank
        self.served_modules = served_modules
        self._served: dict[int, str | None] = {}  # adapter id -> why it cannot be served
        self._base_model = base_model
        self._base: BaseModelSpec | None = None
        self._listeners: list[UnloadListener] = []
        db.apply_schema(SCHEMA)
        migrate(db, "adapters", MIGRATIONS)

    def base(self) -> BaseModelSpec:
        if self._base is None:
            self._base = self._base_model()
        return self._base

    def on_unload(self, listener: UnloadListener) -> None:
        """Call ``listener(ref)`` when a version is deleted or superseded (engines drop it)."""
        self._listeners.append(listener)

    # -- register ----------------------------------------------------------------------

    def register(self, tenant_id: str, name: str, source: Path | str, *,
                 parent: int | None = None) -> AdapterVersion:
        """Validate ``source`` (a PEFT LoRA folder or a .zip/.tar/.tar.gz of one) and
        store it as the next version of ``name`` (``parent``: the version it was trained
        from, recorded in its lineage). The first version of a name becomes its ``stable``.

        Raises NotFound (tenant, path), InvalidAdapter (param names the failing part),
        UnsafeArchive / PayloadTooLarge (param ``archive``). Nothing is stored on error.
        """
        check_name(name, "adapter")
        self._require_tenant(tenant_id)
        source = Path(source)
        staging_root = self.layout.adapters_dir / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=staging_root) as tmp:
            staged = self._stage(source, Path(tmp))
            try:
                info = validate_adapter(staged, self.base(), max_rank=self.max_rank,
                                        check_base_name=self.settings.check_base_name,
                                        served_modules=self.served_modules)
            except InvalidInput as exc:
                log.warning("refused adapter tenant=%s adapter=%s param=%s: %s", tenant_id,
                            name, exc.param, exc.message)
                raise
            lineage = self._lineage(staged, info, parent)
            version = self._commit(tenant_id, name, staged, info, lineage)
        log.info("registered adapter tenant=%s adapter=%s version=%s id=%s rank=%s",
                 tenant_id, name, version.version, version.id, version.rank)
        self._unload_older(version)
        return version

    def register_import(self, tenant_id: str, name: str, path: str) -> AdapterVersion:
        """``register`` for a path a remote caller (the admin API) names: only a folder or
        archive under one of the import roots (see ``import_path``). Raises what
        ``import_path`` and ``register`` raise."""
        return self.register(tenant_id, name, self.import_path(path))

    def import_roots(self) -> list[Path]:
        """The folders ``register_import`` takes paths from (``adapters.import_roots``, by
        default ``<data_dir>/import/adapters``), resolved."""
        roots = self.settings.import_roots
        if roots is None:
            roots = [self.layout.adapter_imports_dir]
        return [Path(os.path.realpath(root)) for root in roots]

    def import_path(self, path: str) -> Path:
        """``path`` resolved (symlinks followed, ``..`` applied), once it is known to lie
        under an import root; the resolved path is what gets copied, so neither ``..`` nor
        a link leads out of a root. Nothing outside the roots is read beyond resolving.

        Raises InvalidInput (param ``path``) when it is empty, relative or not a path;
        PermissionDenied (param ``path``, code ``path_not_allowed``) outside every root.
        """
        if not path or "\x00" in path or not Path(path).is_absolute():
            raise InvalidInput(f"path must be an absolute path on the server; got {path!r}",
                               param="path")
        try:
            # realpath, not Path.resolve: a link loop resolves to some path instead of raising
            resolved = Path(os.path.realpath(path))
        except ValueError:  # a name the file system cannot encode
            raise InvalidInput(f"path is not a valid file name; got {path!r}",
                               param="path") from None
        roots = self.import_roots()
        if not any(resolved.is_relative_to(root) for root in roots):
            allowed = ", ".join(str(root) for root in roots) or "none (adapters.import_roots is [])"
            raise PermissionDenied(
                f"path {path!r} is outside the folders adapters may be registered from over "
                f"HTTP: {allowed}; put it there, or run `lorag adapters register` on the server",
                param="path", code="path_not_allowed")
        return resolved

    def _stage(self, source: Path, tmp: Path) -> Path:
        """A private copy of the adapter files in ``tmp``: validation reads this copy, so
        the caller cannot change the files between the check and the store."""
        limits = dict(max_bytes=self.settings.max_unpacked_bytes,
                      max_files=self.settings.max_archive_entries)
        if is_archive(source):
            if source.stat().st_size > self.settings.max_upload_bytes:
                raise PayloadTooLarge(f"archive is larger than {self.settings.max_upload_bytes} "
                                      "bytes", param="archive")
            return unpack_archive(source, tmp / "adapter", **limits)
        if source.is_symlink() or not source.is_dir():
            raise NotFound(f"{source} is not an adapter folder or archive (.zip, .tar.gz)",
                           param="path")
        copy_adapter_files(source, tmp / "adapter", **limits)
        return tmp / "adapter"

    def _lineage(self, staged: Path, info: AdapterInfo, parent: int | None) -> dict:
        report_path = staged / TRAINING_REPORT
        try:
            report = json.loads(report_path.read_text()) if report_path.is_file() else None
        except ValueError:
            report = None
        config = json.dumps(self.base().config, sort_keys=True).encode()

        def report_get(key: str):
            return report.get(key) if isinstance(report, dict) else None

        return {"base_model": info.base_model,
                "base_config_sha256": hashlib.sha256(config).hexdigest(),
                "weights_sha256": weights_sha256(staged),
                "parent_version": parent if parent is not None else report_get("parent_version"),
                "data_sha256": (report_get("data") or {}).get("sha256"),
                "training_report": report, "gates": []}

    def _commit(self, tenant_id: str, name: str, staged: Path, info: AdapterInfo,
                lineage: dict) -> AdapterVersion:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT last_version FROM adapter_names WHERE tenant_id=? AND name=?",
                               (tenant_id, name)).fetchone()
            version = (row["last_version"] if row else 0) + 1
            conn.execute("INSERT INTO adapter_names VALUES (?,?,?) ON CONFLICT (tenant_id, name) "
                         "DO UPDATE SET last_version=excluded.last_version",
                         (tenant_id, name, version))
            final = self.layout.adapter_dir(tenant_id, name, version)
            cur = conn.execute(
                "INSERT INTO adapters (tenant_id, name, version, path, rank, alpha, targets, "
                "base_model, status, created_at, lineage) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (tenant_id, name, version, str(final), info.rank, info.alpha,
                 json.dumps(list(info.targets)), info.base_model, "ready", time.time(),
                 json.dumps(lineage, default=str)))
            if not conn.execute("SELECT 1 FROM adapter_aliases WHERE tenant_id=? AND name=? "
                                "AND alias=?", (tenant_id, name, STABLE)).fetchone():
                self._write_alias(conn, tenant_id, name, STABLE, cur.lastrowid, version, None)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(final, ignore_errors=True)  # left by a crash before a commit
            staged.rename(final)
            row = conn.execute("SELECT * FROM adapters WHERE id=?", (cur.lastrowid,)).fetchone()
        return _row(row)

    def _unload_older(self, version: AdapterVersion) -> None:
        """Older versions no alias points at leave the engines (a pinned brand reloads)."""
        kept = set(self.aliases(version.tenant_id, version.name).values())
        for old in self.list(version.tenant_id, version.name):
            if old.version < version.version and old.version not in kept:
                self._notify(old.ref())

    # -- read --------------------------------------------------------------------------

    def resolve(self, tenant_id: str, name: str) -> AdapterRef:
        """The newest version of ``name`` as an engine sees it; raises NotFound(adapter),
        or Conflict(adapter) when the engine no longer applies LoRA to all its modules
        (``engine.lora_target_modules`` narrowed since it was registered)."""
        version = self.get(tenant_id, name)
        why = self._not_served(version) if self.served_modules is not None else None
        if why:
            raise Conflict(f"adapter {name!r} version {version.version}: {why}",
                           param="adapter", code="adapter_not_served")
        return version.ref()

    def _not_served(self, version: AdapterVersion) -> str | None:
        """Why the engine cannot serve all of ``version`` (None: it can). Checked once per
        adapter id: ids never name other weights, and the served modules are fixed."""
        if version.id not in self._served:
            try:
                check_still_served(version.path, self.base(), self.served_modules)
                self._served[version.id] = None
            except InvalidAdapter as exc:
                self._served[version.id] = exc.message
        return self._served[version.id]

    def get(self, tenant_id: str, name: str, version: int | None = None) -> AdapterVersion:
        """One version (the newest when ``version`` is None); raises NotFound(adapter)."""
        sql = "SELECT * FROM adapters WHERE tenant_id=? AND name=? AND status='ready'"
        params: tuple = (tenant_id, name)
        if version is not None:
            sql, params = sql + " AND version=?", params + (version,)
        row = self.db.query_one(sql + " ORDER BY version DESC LIMIT 1", params)
        if row is None:
            which = f" version {version}" if version is not None else ""
            raise NotFound(f"adapter {name!r}{which} not found", param="adapter")
        return _row(row)

    def exists(self, tenant_id: str, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM adapters WHERE tenant_id=? AND name=?",
                                 (tenant_id, name)) is not None

    def list(self, tenant_id: str, name: str | None = None) -> list[AdapterVersion]:
        """All versions of the tenant's adapters (of ``name`` only, when given)."""
        sql, params = "SELECT * FROM adapters WHERE tenant_id=?", (tenant_id,)
        if name is not None:
            sql, params = sql + " AND name=?", params + (name,)
        return [_row(r) for r in self.db.query(sql + " ORDER BY name, version", params)]

    # -- targets and aliases -----------------------------------------------------------

    def resolve_target(self, tenant_id: str, name: str, selector: str) -> AdapterRef:
        """The version ``selector`` (alias, ``vN`` or ``latest``) names, as an engine sees
        it; raises NotFound(adapter, code target_not_found), InvalidInput(target), Conflict."""
        kind, number = parse_selector(selector)
        if kind == LATEST:
            return self.resolve(tenant_id, name)
        if kind == "alias":
            number = self.aliases(tenant_id, name).get(selector)
            if number is None:
                raise NotFound(f"adapter {name!r} has no alias {selector!r}", param="adapter",
                               code="target_not_found")
        try:
            version = self.get(tenant_id, name, number)
        except NotFound:
            raise NotFound(f"adapter {name!r} has no version {number}", param="adapter",
                           code="target_not_found") from None
        why = self._not_served(version) if self.served_modules is not None else None
        if why:
            raise Conflict(f"adapter {name!r} version {version.version}: {why}",
                           param="adapter", code="adapter_not_served")
        return version.ref()

    def aliases(self, tenant_id: str, name: str) -> dict[str, int]:
        rows = self.db.query("SELECT al.alias, a.version FROM adapter_aliases al JOIN adapters a "
                             "ON a.id = al.adapter_id WHERE al.tenant_id=? AND al.name=? "
                             "ORDER BY al.alias", (tenant_id, name))
        return {r["alias"]: r["version"] for r in rows}

    def set_alias(self, tenant_id: str, name: str, alias: str, version: int) -> int | None:
        """Point ``alias`` at ``version``; returns the version it pointed at before."""
        check_alias(alias)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM adapters WHERE tenant_id=? AND name=? AND "
                               "version=? AND status='ready'", (tenant_id, name, version)).fetchone()
            if row is None:
                raise NotFound(f"adapter {name!r} version {version} not found", param="adapter")
            before = self._alias_version(conn, tenant_id, name, alias)
            self._write_alias(conn, tenant_id, name, alias, row["id"], version, before)
        log.info("alias tenant=%s adapter=%s %s: %s -> %s", tenant_id, name, alias, before, version)
        return before

    def remove_alias(self, tenant_id: str, name: str, alias: str) -> int:
        with self.db.transaction() as conn:
            before = self._alias_version(conn, tenant_id, name, alias)
            if before is None:
                raise NotFound(f"adapter {name!r} has no alias {alias!r}", param="alias")
            conn.execute("DELETE FROM adapter_aliases WHERE tenant_id=? AND name=? AND alias=?",
                         (tenant_id, name, alias))
            if self.audit is not None:
                self.audit.record(conn, tenant_id=tenant_id, action="alias.remove",
                                  subject=f"{name}@{alias}", before={"version": before})
        return before

    def add_lineage(self, tenant_id: str, name: str, version: int, **facts) -> dict:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id, lineage FROM adapters WHERE tenant_id=? AND name=? "
                               "AND version=?", (tenant_id, name, version)).fetchone()
            if row is None:
                raise NotFound(f"adapter {name!r} version {version} not found", param="adapter")
            lineage = json.loads(row["lineage"] or "{}")
            for key, value in facts.items():
                if isinstance(lineage.get(key), list):
                    lineage[key].append(value)
                else:
                    lineage[key] = value
            conn.execute("UPDATE adapters SET lineage=? WHERE id=?",
                         (json.dumps(lineage, default=str), row["id"]))
        return lineage

    def _alias_version(self, conn: sqlite3.Connection, tenant_id: str, name: str,
                       alias: str) -> int | None:
        row = conn.execute("SELECT a.version FROM adapter_aliases al JOIN adapters a ON "
                           "a.id = al.adapter_id WHERE al.tenant_id=? AND al.name=? AND "
                           "al.alias=?", (tenant_id, name, alias)).fetchone()
        return row[0] if row else None

    def _write_alias(self, conn: sqlite3.Connection, tenant_id: str, name: str, alias: str,
                     adapter_id: int, version: int, before: int | None) -> None:
        conn.execute("INSERT INTO adapter_aliases VALUES (?,?,?,?,?) ON CONFLICT (tenant_id, "
                     "name, alias) DO UPDATE SET adapter_id=excluded.adapter_id, "
                     "updated_at=excluded.updated_at",
                     (tenant_id, name, alias, adapter_id, time.time()))
        if self.audit is not None:
            self.audit.record(conn, tenant_id=tenant_id, action="alias.set",
                              subject=f"{name}@{alias}",
                              before=None if before is None else {"version": before},
                              after={"version": version})

    # -- delete ------------------------------------------------------------------------

    def delete(self, tenant_id: str, name: str, version: int | None = None) -> list[AdapterVersion]:
        """Delete one version, or every version when ``version`` is None: rows, engine
        caches (through the unload listeners) and files. Raises NotFound(adapter)."""
        sql, params = "FROM adapters WHERE tenant_id=? AND name=?", (tenant_id, name)
        if version is not None:
            sql, params = sql + " AND version=?", params + (version,)
        with self.db.transaction() as conn:
            removed = [_row(r) for r in conn.execute("SELECT * " + sql, params).fetchall()]
            if not removed:
                which = f" version {version}" if version is not None else ""
                raise NotFound(f"adapter {name!r}{which} not found", param="adapter")
            self._record_dropped_aliases(conn, removed)
            conn.execute("DELETE " + sql, params)
        for gone in removed:
            self._notify(gone.ref())
            shutil.rmtree(gone.path, ignore_errors=True)
            log.info("deleted adapter tenant=%s adapter=%s version=%s id=%s", tenant_id, name,
                     gone.version, gone.id)
        return removed

    def _record_dropped_aliases(self, conn: sqlite3.Connection,
                                removed: list[AdapterVersion]) -> None:
        if self.audit is None:
            return
        for gone in removed:
            for row in conn.execute("SELECT alias FROM adapter_aliases WHERE adapter_id=?",
                                    (gone.id,)).fetchall():
                self.audit.record(conn, tenant_id=gone.tenant_id, action="alias.remove",
                                  subject=f"{gone.name}@{row['alias']}",
                                  before={"version": gone.version},
                                  after={"reason": "version deleted"})

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete every adapter of a tenant that is being deleted, unloading each from the
        engines (the tenant's rows would otherwise go by cascade, unheard)."""
        for name in sorted({v.name for v in self.list(tenant_id)}):
            try:
                self.delete(tenant_id, name)
            except NotFound:  # deleted meanwhile
                pass

    def _notify(self, ref: AdapterRef) -> None:
        for listener in self._listeners:
            try:
                listener(ref)
            except Exception:  # an engine failing to drop a cache must not undo a delete
                log.exception("unload failed tenant=%s adapter=%s version=%s id=%s",
                              ref.tenant_id, ref.name, ref.version, ref.int_id)

    def _require_tenant(self, tenant_id: str) -> None:
        if self.db.query_one("SELECT 1 FROM tenants WHERE id=?", (tenant_id,)) is None:
            raise NotFound(f"tenant {tenant_id!r} not found", param="tenant")
