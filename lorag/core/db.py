"""SQLite helpers: one connection per thread, WAL, foreign keys, explicit transactions."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _ThreadConnection:
    """One thread's connection; closed when the thread ends and its locals are dropped
    (ingestion jobs each run on a thread of their own: their connections, file
    descriptors and page caches must not outlive them)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __del__(self) -> None:
        with suppress(Exception):  # at interpreter exit sqlite3 may be half torn down
            self.conn.close()


class Database:
    """A SQLite file with a connection per thread; each store applies its own schema.

    ``transaction()`` takes the write lock up front (BEGIN IMMEDIATE) so that a
    read-then-write never fails half way with SQLITE_BUSY.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._all: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._lock = threading.Lock()

    def apply_schema(self, schema: str) -> None:
        """Run idempotent DDL (``CREATE ... IF NOT EXISTS``)."""
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = _ThreadConnection(_connect(self.path))
            with self._lock:
                self._all.add(held)
        return held.conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.connection().execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            for held in list(self._all):
                held.conn.close()
            self._all.clear()
        self._local = threading.local()
