"""Versioned, recorded schema migrations of the catalog (``lorag.db``).

Each store applies its *baseline* schema (``CREATE TABLE IF NOT EXISTS``, the shape the
catalog had when migrations were introduced) and then its own list of migrations, so a
catalog written by an older lorag and a fresh one go through the same steps. A
migration runs in one transaction together with its record in ``schema_migrations``
(component, version): a crash or an error half way leaves the old schema and data as
they were, and the next start runs it again. Components number their migrations
independently (``brands`` 1, 2, ...; ``adapters`` 1, ...), so stores of different layers
never share a counter.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from lorag.core.db import Database
from lorag.core.errors import ServerError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    PRIMARY KEY (component, version)
);
"""

Step = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    """Version ``version`` of a component's schema: ``apply`` runs inside a transaction
    (statements only; never COMMIT, never ``executescript``)."""

    version: int
    name: str
    apply: Step


def statements(*sql: str) -> Step:
    """A step that executes each statement in order."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return apply


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def applied(db: Database, component: str) -> int:
    """The component's schema version (0 when none of its migrations has run)."""
    db.apply_schema(SCHEMA)
    row = db.query_one("SELECT MAX(version) AS v FROM schema_migrations WHERE component=?",
                       (component,))
    return int(row["v"] or 0) if row else 0


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Run the component's pending migrations in version order, one transaction each;
    returns the versions applied. Raises ServerError when the catalog is newer than this
    code (written by a later lorag): nothing is changed then."""
    _check_sequence(component, migrations)
    latest = migrations[-1].version if migrations else 0
    found = applied(db, component)
    if found > latest:
        raise ServerError(f"the catalog's {component} schema is version {found}, newer than "
                          f"this lorag knows ({latest}); upgrade lorag", code="schema_too_new")
    done: list[int] = []
    for migration in migrations:
        with db.transaction() as conn:  # BEGIN IMMEDIATE: one process migrates at a time
            current = _version(conn, component)
            if migration.version <= current:
                continue
            migration.apply(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (?,?,?,?)",
                         (component, migration.version, migration.name, time.time()))
        log.info("migrated catalog component=%s version=%s (%s)", component, migration.version,
                 migration.name)
        done.append(migration.version)
    return done


def _version(conn: sqlite3.Connection, component: str) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_migrations WHERE component=?",
                       (component,)).fetchone()
    return int(row[0] or 0)


def _check_sequence(component: str, migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{component} migrations must be numbered 1..n in order; got {versions}")
