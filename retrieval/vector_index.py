"""Vector indexes: the Protocol, FAISS implementations and their file format.

Ids are chunk ids (SQLite ``INTEGER PRIMARY KEY AUTOINCREMENT``, never reused), so an
index needs no id mapping of its own. Scores are inner products of normalised vectors
(cosine): higher is better.

``flat`` is exact (IndexFlatIP); ``hnsw`` is approximate (IndexHNSWFlat) for large
tenants. HNSW cannot remove vectors, so removed ids are kept in a ``deleted`` set and
excluded at search time by an IDSelector; ``needs_rebuild`` says when that set is
large enough that the index should be rebuilt from the store.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from lorag.core.layout import write_atomically
from lorag.core.plugins import Registry
from retrieval.settings import IndexSettings


class VectorIndex(Protocol):
    """A set of (id, vector) pairs searchable by inner product."""

    kind: str
    dimension: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids (int64, never already present); raises ValueError
        unless ``vectors`` is (len(ids), dimension)."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids; unknown ids are ignored."""

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the best ``k`` live vectors for one query, best first;
        only ids in ``allowed`` when it is given. Raises ValueError unless the query
        has ``dimension`` values."""

    def ids(self) -> np.ndarray:
        """All live ids (sorted)."""

    def __len__(self) -> int:
        """Live vectors."""

    def needs_rebuild(self) -> bool:
        """True when the index should be rebuilt from the store (e.g. too many tombstones)."""

    def to_bytes(self) -> bytes:
        """Serialized form, read back by the class's ``from_bytes``."""


vector_indexes: Registry[type] = Registry("vector index")


def _ids(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


def _top(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = labels >= 0
    return labels[keep], scores[keep]


@vector_indexes.register("flat")
class FlatIndex:
    """Exact inner-product search (IndexFlatIP inside IndexIDMap2)."""

    kind = "flat"

    def __init__(self, dimension: int, settings: IndexSettings | None = None,
                 index: faiss.Index | None = None):
        self.dimension = dimension
        self.index = index or faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _matrix(vectors, len(ids), self.dimension)
        if len(ids):
            self.index.add_with_ids(vectors, _ids(ids))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(_ids(ids)))

    def search(self, query, k, allowed=None):
        if self.index.ntotal == 0 or k <= 0:
            return _ids([]), np.zeros(0, dtype=np.float32)
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(_ids(allowed)))
        k = min(k, self.index.ntotal)
        scores, labels = self.index.search(_as_query(query, self.dimension), k, params=params)
        return _top(labels[0], scores[0])

    def ids(self) -> np.ndarray:
        return np.sort(faiss.vector_to_array(self.index.id_map))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def needs_rebuild(self) -> bool:
        return False

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dimension: int, settings: IndexSettings | None = None):
        return cls(dimension, settings, faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))


@vector_indexes.register("hnsw")
class HNSWIndex:
    """Approximate search (IndexHNSWFlat inside IndexIDMap2) with tombstones for removals."""

    kind = "hnsw"
    rebuild_fraction = 0.25

    def __init__(self, dimension: int, settings: IndexSettings | None = None,
                 index: faiss.Index | None = None, deleted: np.ndarray | None = None):
        settings = settings or IndexSettings()
        self.dimension, self.settings = dimension, settings
        if index is None:
            hnsw = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = settings.hnsw_ef_construction
            index = faiss.IndexIDMap2(hnsw)
        self.index = index
        self.deleted: set[int] = set() if deleted is None else set(int(i) for i in deleted)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _matrix(vectors, len(ids), self.dimension)
        if len(ids):
            self.index.add_with_ids(vectors, _ids(ids))

    def remove(self, ids: np.ndarray) -> None:
        present = set(faiss.vector_to_array(self.index.id_map).tolist()) if len(ids) else set()
        self.deleted.update(int(i) for i in ids if int(i) in present)

    def search(self, query, k, allowed=None):
        if len(self) == 0 or k <= 0:
            return _ids([]), np.zeros(0, dtype=np.float32)
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(_ids(allowed))
        elif self.deleted:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(_ids(sorted(self.deleted))))
        params = faiss.SearchParametersHNSW(efSearch=self.ef_search(k))
        if selector is not None:
            params.sel = selector
        scores, labels = self.index.search(_as_query(query, self.dimension), min(k, len(self)), params=params)
        labels, scores = _top(labels[0], scores[0])
        if allowed is not None and self.deleted:
            keep = np.array([int(i) not in self.deleted for i in labels], dtype=bool)
            labels, scores = labels[keep], scores[keep]
        return labels, scores

    def ef_search(self, k: int) -> int:
        """The query beam for ``k`` results: at least ``k`` and ``hnsw_ef_search``, growing
        with the square root of the indexed vectors."""
        grown = math.ceil(self.settings.hnsw_ef_search_per_sqrt * math.sqrt(self.index.ntotal))
        return max(self.settings.hnsw_ef_search, grown, k)

    def ids(self) -> np.ndarray:
        all_ids = faiss.vector_to_array(self.index.id_map)
        if self.deleted:
            all_ids = all_ids[~np.isin(all_ids, _ids(sorted(self.deleted)))]
        return np.sort(all_ids)

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.deleted)

    def needs_rebuild(self) -> bool:
        return len(self.deleted) > self.rebuild_fraction * max(1, int(self.index.ntotal))

    def to_bytes(self) -> bytes:
        body = faiss.serialize_index(self.index).tobytes()
        deleted = _ids(sorted(self.deleted)).tobytes()
        return struct.pack("<Q", len(deleted)) + deleted + body

    @classmethod
    def from_bytes(cls, data: bytes, dimension: int, settings: IndexSettings | None = None):
        (size,) = struct.unpack_from("<Q", data)
        deleted = np.frombuffer(data, dtype=np.int64, count=size // 8, offset=8)
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=8 + size))
        return cls(dimension, settings, index, deleted)


def _matrix(vectors: np.ndarray, rows: int, dimension: int) -> np.ndarray:
    """``vectors`` as contiguous float32, checked: FAISS checks shapes with ``assert``,
    which ``python -O`` strips, and then reads past the buffer."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (rows, dimension):
        raise ValueError(f"expected {rows} vectors of dimension {dimension}, "
                         f"got shape {vectors.shape}")
    return vectors


def _as_query(query: np.ndarray, dimension: int) -> np.ndarray:
    return _matrix(np.asarray(query, dtype=np.float32).reshape(1, -1), 1, dimension)


def create_index(kind: str, dimension: int, settings: IndexSettings) -> VectorIndex:
    """A new empty index of a registered kind; raises UnknownName."""
    return vector_indexes.get(kind, param="index")(dimension, settings)


# --- the index file: a rebuildable cache of the store's vectors --------------------------

MAGIC = b"LORAG-INDEX\x01"


@dataclass(frozen=True)
class IndexHeader:
    """What an index file covers: every chunk id <= ``covered`` as of deletion ``generation``."""

    kind: str
    dimension: int
    embedder: str
    covered: int
    generation: int


def write_index_file(path: Path, header: IndexHeader, payload: bytes) -> None:
    """Write ``payload`` (``VectorIndex.to_bytes()``) atomically: temp file in the same
    folder, fsync, os.replace, fsync the folder. A reader sees the old file or the new one."""
    meta = json.dumps({**header.__dict__, "crc32": zlib.crc32(payload),
                       "size": len(payload)}).encode()
    write_atomically(path, MAGIC + struct.pack("<I", len(meta)) + meta, payload)


def remove_stale_temp_files(path: Path, older_than: float = 3600.0) -> None:
    """Delete temp files a killed writer left next to ``path`` (only old ones: a live
    writer in another process may be about to rename a fresh one)."""
    import time

    for tmp in path.parent.glob(path.name + ".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > older_than:
                tmp.unlink()
        except FileNotFoundError:
            pass


class CorruptIndexFile(Exception):
    """The file is not a complete lorag index file; the caller rebuilds from the store."""


def read_index_file(path: Path, settings: IndexSettings) -> tuple[IndexHeader, VectorIndex]:
    """Read an index file; raises FileNotFoundError, or CorruptIndexFile if it is damaged."""
    data = path.read_bytes()
    try:
        stream = io.BytesIO(data)
        if stream.read(len(MAGIC)) != MAGIC:
            raise ValueError("bad magic")
        (size,) = struct.unpack("<I", stream.read(4))
        meta = json.loads(stream.read(size))
        payload = data[stream.tell():]
        if len(payload) != meta.pop("size") or zlib.crc32(payload) != meta.pop("crc32"):
            raise ValueError("truncated or corrupted payload")
        header = IndexHeader(**meta)
        cls = vector_indexes.get(header.kind, param="index")
        return header, cls.from_bytes(payload, header.dimension, settings)
    except Exception as exc:  # any damage means: rebuild from the store
        raise CorruptIndexFile(f"{path}: {exc}") from exc
