"""What the reliability tests share: settings and environments for lorag processes on a
data directory, the consistency checks run after every crash, and the figures report.

Every check here reads the data directory through lorag's own container, exactly as a
restarted process would.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from adapters.settings import AdapterSettings, EngineSettings
from adapters.validation import BaseModelSpec, validate_adapter
from lorag.app.settings import Settings
from lorag.core.jobs import QUEUED, RUNNING
from lorag.app.container import Lorag
from retrieval.settings import EmbedderSettings, RetrievalSettings
from lorag.testing.server import child_environ

REPO = Path(__file__).resolve().parents[2]
FIGURES_DIR = REPO / "build" / "reliability"


def settings(data_dir: Path, model: Path, **engine) -> Settings:
    """The settings every reliability process uses: the fake embedder (no model to load),
    the tiny model as the base the adapters are validated against and served on."""
    return Settings(data_dir=data_dir, environment="test",
                    retrieval=RetrievalSettings(embedder=EmbedderSettings(backend="fake")),
                    engine=EngineSettings(model=str(model), max_model_len=512,
                                          kv_cache_bytes=64 * 2**20, **engine),
                    adapters=AdapterSettings(max_unpacked_bytes=16 * 2**20))


def child_env(data_dir: Path, model: Path, **extra: str) -> dict[str, str]:
    """The same settings for a child process (``lorag ...`` reads them from LORAG_*)."""
    return {**child_environ(), "LORAG_DATA_DIR": str(data_dir), "LORAG_ENVIRONMENT": "test",
            "LORAG_RETRIEVAL__EMBEDDER__BACKEND": "fake", "LORAG_ENGINE__MODEL": str(model),
            "LORAG_ENGINE__MAX_MODEL_LEN": "512", "LORAG_ENGINE__KV_CACHE_BYTES": str(64 * 2**20),
            "LORAG_ADAPTERS__MAX_UNPACKED_BYTES": str(16 * 2**20),
            "LORAG_ADAPTERS__TRAINING__THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1", **extra}


def lorag_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lorag", *args]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- the state of a data directory, checked ------------------------------------------------

@dataclass
class Observed:
    """What a restarted process sees: per tenant, document id -> metadata ``v`` (the
    version of the text), and (adapter, version) -> sha256 of its weights."""

    documents: dict[str, dict[str, int | None]] = field(default_factory=dict)
    adapters: dict[str, dict[tuple[str, int], str]] = field(default_factory=dict)
    orphan_adapter_folders: list[str] = field(default_factory=list)
    stale_orphan_adapter_folders: list[str] = field(default_factory=list)  # never replaced
    leftover_temp: list[str] = field(default_factory=list)  # staging, uploads of dead jobs
    chunks: int = 0


def check_data_dir(data_dir: Path, model: Path, *, search: bool = True) -> Observed:
    """Open the data directory as a restarted process and assert that nothing is
    inconsistent or half-done; return what it holds.

    - every tenant store passes SQLite's and FTS5's integrity checks;
    - the vector index (file loaded and caught up) holds exactly the store's chunk ids;
    - no chunk without its document, each document's chunk count is its chunks';
    - every document is found by lexical search for its unique marker and by a dense
      search restricted to it (``search``);
    - every adapter row has its folder, whose files pass validation;
    - after the start-up step that a restarted server runs, no job is queued or running.
    """
    app = Lorag(settings(data_dir, model))
    try:
        app.jobs.fail_interrupted()  # what a restarted server does first
        stuck = app.catalog.query("SELECT id FROM jobs WHERE status IN (?, ?)", (QUEUED, RUNNING))
        assert not stuck, f"jobs still running after restart: {stuck}"
        observed = Observed()
        for tenant in [t.id for t in app.tenants.list()]:
            observed.documents[tenant] = _check_documents(app, tenant, search)
            observed.adapters[tenant] = _check_adapters(app, tenant)
        observed.orphan_adapter_folders = _orphan_adapter_folders(app)
        observed.stale_orphan_adapter_folders = _stale_orphans(app, observed.orphan_adapter_folders)
        observed.leftover_temp = sorted(
            str(p) for p in [*app.layout.uploads_dir.glob("*/*"),
                             *(app.layout.adapters_dir / ".staging").glob("*")])
        observed.chunks = sum(app.retrieval.tenant_index(t.id).store.counts()[1]
                              for t in app.tenants.list())
        return observed
    finally:
        app.close()


def _check_documents(app: Lorag, tenant: str, search: bool) -> dict[str, int | None]:
    index = app.retrieval.tenant_index(tenant)
    store = index.store
    if not store.exists():
        return {}
    db = store.db
    assert db.query_one("PRAGMA integrity_check")[0] == "ok"
    db.connection().execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    orphans = db.query_one("SELECT count(*) FROM chunks c LEFT JOIN documents d "
                           "ON d.pk = c.document_pk WHERE d.pk IS NULL")[0]
    assert orphans == 0, f"{orphans} chunks without a document"
    fts = sorted(r[0] for r in db.query("SELECT rowid FROM chunks_fts"))
    chunk_ids = store.chunk_ids().tolist()
    assert fts == chunk_ids, "FTS rows and chunks differ"
    assert sorted(index.vector_ids().tolist()) == chunk_ids, "index and store differ"
    counted = dict(db.query("SELECT d.id, count(c.id) FROM documents d "
                            "LEFT JOIN chunks c ON c.document_pk = d.pk GROUP BY d.id"))
    documents = {}
    for doc in store.list_documents(100_000, 0):
        assert counted[doc.id] == doc.chunks > 0, (doc.id, counted[doc.id], doc.chunks)
        documents[doc.id] = doc.metadata.get("v")
        if search and "marker" in doc.metadata:
            marker = doc.metadata["marker"]
            hits = app.retrieval.search(tenant, marker, mode="lexical", k=1)
            assert [h.document_id for h in hits] == [doc.id], (doc.id, hits)
            dense = app.retrieval.search(tenant, marker, mode="dense", k=1,
                                         document_ids=[doc.id])
            assert [h.document_id for h in dense] == [doc.id]
    return documents


def _check_adapters(app: Lorag, tenant: str) -> dict[tuple[str, int], str]:
    base = BaseModelSpec.from_folder(app.settings.engine.model)
    found = {}
    for version in app.adapters.list(tenant):
        expected = app.layout.adapter_dir(tenant, version.name, version.version)
        assert version.path == expected, (version.path, expected)
        assert version.path.is_dir(), f"adapter row without its folder: {version.path}"
        validate_adapter(version.path, base, max_rank=app.settings.engine.max_lora_rank)
        found[version.name, version.version] = sha256_file(version.path / "adapter_model.safetensors")
        assert app.adapters.resolve(tenant, version.name).version >= version.version
    return found


def _orphan_adapter_folders(app: Lorag) -> list[str]:
    """Version folders with no row: never served (lorag serves rows only), counted."""
    rows = {str(v.path) for t in app.tenants.list() for v in app.adapters.list(t.id)}
    root = app.layout.adapters_dir
    folders = {str(p) for p in root.glob("*/*/*") if p.is_dir() and not p.parts[-3].startswith(".")}
    return sorted(folders - rows)


def _stale_orphans(app: Lorag, orphans: list[str]) -> list[str]:
    """The orphan folders a later registration would not replace. A kill between a
    version folder's rename into place and its commit leaves the folder of the version
    after its name's last one, which the next registration of that name overwrites;
    any other orphan would stay for good."""
    if not orphans:
        return []
    last = {(r["tenant_id"], r["name"]): r["last_version"]
            for r in app.catalog.query("SELECT tenant_id, name, last_version FROM adapter_names")}
    return [o for o in orphans
            if Path(o).name != str(last.get((Path(o).parts[-3], Path(o).parts[-2]), 0) + 1)]


# -- figures ---------------------------------------------------------------------------------

def write_figures(name: str, figures: dict) -> Path:
    """Save one test's figures as build/reliability/<name>.json (for tests/RELIABILITY.md)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\nreliability figures {name}: {json.dumps(figures, sort_keys=True, default=str)}")
    return path
