"""The tenant's chunk store: one SQLite file per tenant (documents, chunks, FTS5, meta).

One file per tenant isolates tenants by construction (no query can reach another
tenant's rows), keeps BM25 statistics per tenant, and lets one tenant's ingestion
never hold another's write lock. It is the source of truth: every chunk row keeps its
embedding, so the FAISS file is a cache rebuildable without re-embedding.

Chunk ids are AUTOINCREMENT (never reused) and are the vector ids. Triggers keep the
FTS5 table and the deletion log in step with the chunks table; a transaction that
deletes chunks first bumps ``generation``, so a reader that knows (covered id,
generation) can catch up: chunks with a larger id were added, and
``deleted_chunks`` rows with a larger generation were removed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lorag.core.db import Database
from retrieval.filters import Comparison, Compound, Filter
from retrieval.types import DocumentWrite, SearchHit, StoredDocument

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0'), ('log_floor', '0');
CREATE TABLE IF NOT EXISTS documents (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT,
    source TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    char_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_pk INTEGER NOT NULL REFERENCES documents(pk),
    position INTEGER NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB NOT NULL,
    location TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_pk, position);
CREATE TABLE IF NOT EXISTS deleted_chunks (
    chunk_id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deleted_chunks_generation ON deleted_chunks(generation);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_inserted AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_deleted AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT OR REPLACE INTO deleted_chunks (chunk_id, generation)
        VALUES (old.id, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'));
END;
"""

_HIT_COLUMNS = ("c.id, c.position, c.text, d.id AS document_id, d.title, d.source, "
                "d.metadata, c.location")


@dataclass(frozen=True)
class StoreState:
    covered: int      # the largest chunk id ever allocated
    generation: int   # bumped by every transaction that deletes chunks
    log_floor: int    # deletion-log rows with generation <= this may have been pruned


@dataclass
class VectorChanges:
    """What changed after (covered, generation): vectors to add, ids to remove.

    ``complete`` is False when the deletion log no longer reaches back far enough; the
    reader must then rebuild from ``ChunkStore.all_vectors``.
    """

    state: StoreState
    ids: np.ndarray
    vectors: np.ndarray
    removed: np.ndarray
    complete: bool = True


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _vectors(blobs: list[bytes], dimension: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)


def filter_clause(filters: dict | Filter | None,
                  document_ids: list[str] | None) -> tuple[str, list]:
    """SQL conditions on ``d`` (documents) for metadata equality (a dict) or a Filter
    tree, and document ids.

    Keys and values are trusted here (validated by the search service).
    """
    clauses, params = [], []
    if isinstance(filters, (Comparison, Compound)):
        clause, values = filters.sql()
        clauses.append(f"({clause})")
        params += values
        filters = None
    for key, value in (filters or {}).items():
        clauses.append("json_extract(d.metadata, ?) = ?")
        params += [f'$."{key}"', int(value) if isinstance(value, bool) else value]
    if document_ids is not None:
        clauses.append("d.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(document_ids)))
    return " AND ".join(clauses), params


# A tenant's chunks in document order, with their character span in the normalised text.
_DOCUMENT_CHUNKS = ("SELECT c.document_pk, c.char_start, c.char_end, c.text FROM chunks c "
                    "ORDER BY c.document_pk, c.position")


def join_chunks(chunks: Iterable[tuple[int, int, str]]) -> str:
    """Rebuild a text from ``(char_start, char_end, text)`` chunks in order, keeping each
    overlapped stretch once; a chunk whose text does not match its span is appended
    whole, and gaps become a blank line."""
    parts: list[str] = []
    covered = None
    for start, end, text in chunks:
        if covered is None or start >= covered or len(text) != end - start:
            parts.append(text if covered is None or start == covered else "\n\n" + text)
        else:
            parts.append(text[covered - start:])
        covered = end if covered is None else max(covered, end)
    return "".join(parts)


class ChunkStore:
    """A tenant's SQLite store. The file is created on the first write, not by reads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: Database | None = None
        self._inode: int | None = None
        self._lock = threading.Lock()

    def exists(self) -> bool:
        with self._lock:
            self._close_if_replaced()
        return self.path.exists()

    @property
    def identity(self) -> int | None:
        """The open file's inode: changes when the tenant was deleted and created again
        (possibly by another process), so caches built on the old file can be dropped."""
        return self._inode

    @property
    def db(self) -> Database:
        with self._lock:
            self._close_if_replaced()
            if self._db is None:
                db = Database(self.path)
                db.apply_schema(SCHEMA)
                _add_chunk_location(db)
                self._db, self._inode = db, os.stat(self.path).st_ino
            return self._db

    def _close_if_replaced(self) -> None:
        if self._db is None:
            return
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            self._db.close()
            self._db, self._inode = None, None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db, self._inode = None, None

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self.db.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def document_texts(self) -> list[str]:
        """One text per stored document, rebuilt from its chunks without the overlap
        between neighbours ([] when nothing is stored). Read on a read-only connection of
        its own, so a long reader (training) never holds a lock a writer waits for."""
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' "
                                "AND name='chunks'").fetchone():
                return []
            rows = conn.execute(_DOCUMENT_CHUNKS).fetchall()
        finally:
            conn.close()
        return [join_chunks((start, end, text) for _, start, end, text in group)
                for _, group in groupby(rows, key=lambda row: row[0])]

    # --- state and vectors ---------------------------------------------------------------

    def document_text(self, document_id: str) -> str | None:
        """One document's text rebuilt from its chunks (None: no such document)."""
        if not self.path.exists():
            return None
        rows = self.db.query("SELECT c.char_start, c.char_end, c.text FROM chunks c JOIN "
                             "documents d ON d.pk = c.document_pk WHERE d.id=? "
                             "ORDER BY c.position", (document_id,))
        return join_chunks((r[0], r[1], r[2]) for r in rows) if rows else None

    def state(self, conn: sqlite3.Connection | None = None) -> StoreState:
        conn = conn or self.db.connection()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return StoreState(int(row[0]) if row else 0, int(meta["generation"]),
                          int(meta["log_floor"]))

    def changes_since(self, covered: int, generation: int, dimension: int) -> VectorChanges:
        """Vectors added after ``covered`` and ids removed after ``generation``."""
        with self.snapshot() as conn:
            state = self.state(conn)
            if generation < state.log_floor:
                return VectorChanges(state, np.zeros(0, np.int64),
                                     _vectors([], dimension), np.zeros(0, np.int64), False)
            rows = conn.execute("SELECT id, embedding FROM chunks WHERE id > ? ORDER BY id",
                                (covered,)).fetchall()
            removed = conn.execute("SELECT chunk_id FROM deleted_chunks WHERE generation >= ? "
                                   "AND chunk_id <= ?", (generation, covered)).fetchall()
        return VectorChanges(state, np.array([r[0] for r in rows], dtype=np.int64),
                             _vectors([r[1] for r in rows], dimension),
                             np.array([r[0] for r in removed], dtype=np.int64))

    def all_vectors(self, dimension: int) -> VectorChanges:
        """Every live vector, with the state they are current for."""
        with self.snapshot() as conn:
            state = self.state(conn)
            rows = conn.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
        return VectorChanges(state, np.array([r[0] for r in rows], dtype=np.int64),
                             _vectors([r[1] for r in rows], dimension), np.zeros(0, np.int64))

    def vectors(self, chunk_ids: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the given chunks that exist."""
        rows = self.db.query("SELECT id, embedding FROM chunks WHERE id IN "
                             "(SELECT value FROM json_each(?))",
                             (json.dumps([int(i) for i in chunk_ids]),))
        return (np.array([r[0] for r in rows], dtype=np.int64),
                _vectors([r[1] for r in rows], dimension))

    def vectors_by_text(self, document_ids: list[str], dimension: int) -> dict[str, np.ndarray]:
        """Chunk text -> stored vector, over the chunks of the given documents (to reuse
        the vectors of unchanged chunks when a document is replaced)."""
        rows = self.db.query("SELECT c.text, c.embedding FROM chunks c JOIN documents d "
                             "ON d.pk = c.document_pk WHERE d.id IN "
                             "(SELECT value FROM json_each(?))", (json.dumps(document_ids),))
        vectors = _vectors([r[1] for r in rows], dimension)
        return {r[0]: vector for r, vector in zip(rows, vectors)}

    def prune_deletion_log(self, up_to_generation: int) -> None:
        """Forget deletions of generations <= ``up_to_generation``; older readers rebuild."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM deleted_chunks WHERE generation <= ?", (up_to_generation,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'log_floor' "
                         "AND CAST(value AS INTEGER) < ?", (str(up_to_generation),
                                                             up_to_generation))

    def deletion_log_size(self) -> int:
        return self.db.query_one("SELECT count(*) FROM deleted_chunks")[0]

    # --- embedder identity ---------------------------------------------------------------

    def embedder(self) -> tuple[str, int] | None:
        """(name, dimension) of the embedder the stored vectors come from, if any."""
        if not self.exists():
            return None
        rows = dict(self.db.query("SELECT key, value FROM meta WHERE key IN "
                                  "('embedder', 'dimension')"))
        return (rows["embedder"], int(rows["dimension"])) if "embedder" in rows else None

    # --- writes --------------------------------------------------------------------------

    def write(self, documents: list[DocumentWrite], *, embedder: str, dimension: int) -> list[bool]:
        """Insert or replace documents with their chunks, in ONE transaction.

        Returns, per document, True if it replaced an existing one. A replaced
        document's old chunks are deleted (logged, removed from FTS) in the same
        transaction.
        """
        now = time.time()
        replaced = []
        with self.db.transaction() as conn:
            self._set_embedder(conn, embedder, dimension)
            bumped = False
            for doc in documents:
                old = conn.execute("SELECT pk, created_at FROM documents WHERE id = ?",
                                   (doc.id,)).fetchone()
                if old is not None and not bumped:
                    self._bump_generation(conn)
                    bumped = True
                pk = self._upsert_document(conn, doc, old, now)
                self._insert_chunks(conn, pk, doc)
                replaced.append(old is not None)
        return replaced

    def delete_documents(self, document_ids: list[str]) -> list[str]:
        """Delete documents and their chunks in one transaction; returns the ids that existed."""
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT pk, id FROM documents WHERE id IN "
                                "(SELECT value FROM json_each(?))",
                                (json.dumps(list(document_ids)),)).fetchall()
            if rows:
                self._bump_generation(conn)
            for pk, _ in rows:
                conn.execute("DELETE FROM chunks WHERE document_pk = ?", (pk,))
                conn.execute("DELETE FROM documents WHERE pk = ?", (pk,))
        return [r[1] for r in rows]

    def _set_embedder(self, conn: sqlite3.Connection, name: str, dimension: int) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?), "
                     "('dimension', ?)", (name, str(dimension)))

    @staticmethod
    def _bump_generation(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @staticmethod
    def _upsert_document(conn: sqlite3.Connection, doc: DocumentWrite, old, now: float) -> int:
        values = (doc.title, doc.source, json.dumps(doc.metadata, sort_keys=True),
                  doc.content_hash, len(doc.chunks), doc.characters)
        if old is None:
            cur = conn.execute(
                "INSERT INTO documents (id, title, source, metadata, content_hash, chunk_count, "
                "char_count, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (doc.id, *values, now, now))
            return cur.lastrowid
        pk = old[0]
        conn.execute("DELETE FROM chunks WHERE document_pk = ?", (pk,))
        conn.execute("UPDATE documents SET title=?, source=?, metadata=?, content_hash=?, "
                     "chunk_count=?, char_count=?, updated_at=? WHERE pk=?", (*values, now, pk))
        return pk

    @staticmethod
    def _insert_chunks(conn: sqlite3.Connection, pk: int, doc: DocumentWrite) -> None:
        conn.executemany(
            "INSERT INTO chunks (document_pk, position, char_start, char_end, token_count, text, "
            "embedding, location) VALUES (?,?,?,?,?,?,?,?)",
            [(pk, c.position, c.char_start, c.char_end, c.token_count, c.text, _blob(v),
              json.dumps(c.location, sort_keys=True)) for c, v in zip(doc.chunks, doc.vectors)])

    # --- documents -----------------------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        if not self.exists():
            return {}
        return dict(self.db.query("SELECT id, content_hash FROM documents"))

    def list_documents(self, limit: int, offset: int) -> list[StoredDocument]:
        if not self.exists():
            return []
        rows = self.db.query("SELECT * FROM documents ORDER BY id LIMIT ? OFFSET ?",
                             (limit, offset))
        return [_document(r) for r in rows]

    def get_document(self, document_id: str) -> StoredDocument | None:
        if not self.exists():
            return None
        row = self.db.query_one("SELECT * FROM documents WHERE id = ?", (document_id,))
        return _document(row) if row else None

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        if not self.exists():
            return 0, 0
        row = self.db.query_one("SELECT (SELECT count(*) FROM documents), "
                                "(SELECT count(*) FROM chunks)")
        return row[0], row[1]

    def chunk_ids(self) -> np.ndarray:
        rows = self.db.query("SELECT id FROM chunks ORDER BY id")
        return np.array([r[0] for r in rows], dtype=np.int64)

    # --- search support ------------------------------------------------------------------

    def allowed_chunk_ids(self, filters: dict | Filter | None, document_ids: list[str] | None) -> np.ndarray:
        """Ids of the chunks whose document passes the filters."""
        where, params = filter_clause(filters, document_ids)
        rows = self.db.query(f"SELECT c.id FROM chunks c JOIN documents d ON d.pk = c.document_pk "
                             f"WHERE {where}", params)
        return np.array([r[0] for r in rows], dtype=np.int64)

    def lexical(self, match: str, k: int, filters: dict | Filter | None,
                document_ids: list[str] | None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best ``k`` chunks for an FTS5 MATCH expression."""
        where, params = filter_clause(filters, document_ids)
        if where:
            sql = ("SELECT c.id, -bm25(chunks_fts) AS score FROM chunks_fts "
                   "JOIN chunks c ON c.id = chunks_fts.rowid "
                   "JOIN documents d ON d.pk = c.document_pk "
                   f"WHERE chunks_fts MATCH ? AND {where} ORDER BY score DESC LIMIT ?")
        else:
            sql = ("SELECT rowid, -rank FROM chunks_fts WHERE chunks_fts MATCH ? "
                   "ORDER BY rank LIMIT ?")
            params = []
        rows = self.db.query(sql, (match, *params, k))
        return [(int(r[0]), float(r[1])) for r in rows]

    def hits(self, scored: list[tuple[int, float]]) -> list[SearchHit]:
        """SearchHits for (chunk id, score) pairs, in the given order; ids with no row
        (deleted meanwhile) are dropped, so no vector without a chunk can surface."""
        if not scored:
            return []
        rows = self.db.query(f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d "
                             "ON d.pk = c.document_pk WHERE c.id IN "
                             "(SELECT value FROM json_each(?))",
                             (json.dumps([int(i) for i, _ in scored]),))
        by_id = {r["id"]: r for r in rows}
        return [_hit(by_id[i], score) for i, score in scored if i in by_id]


def _document(row: sqlite3.Row) -> StoredDocument:
    return StoredDocument(id=row["id"], title=row["title"], source=row["source"],
                          metadata=json.loads(row["metadata"]), content_hash=row["content_hash"],
                          chunks=row["chunk_count"], characters=row["char_count"],
                          created_at=row["created_at"], updated_at=row["updated_at"])


def _hit(row: sqlite3.Row, score: float) -> SearchHit:
    # The chunk's location (section, page, slide) joins its document's metadata.
    metadata = {**json.loads(row["metadata"]), **json.loads(row["location"])}
    return SearchHit(chunk_id=row["id"], document_id=row["document_id"], position=row["position"],
                     text=row["text"], title=row["title"], source=row["source"],
                     metadata=metadata, score=float(score))


def _add_chunk_location(db: Database) -> None:
    """Stores made before chunks had a location get the column (empty for old rows)."""
    def missing(conn) -> bool:
        return "location" not in {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}

    if missing(db.connection()):
        with db.transaction() as conn:
            if missing(conn):  # another process may have added it meanwhile
                conn.execute("ALTER TABLE chunks ADD COLUMN location TEXT NOT NULL DEFAULT '{}'")
