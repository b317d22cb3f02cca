"""Upgrades in place: a catalog written by lorag before migrations (commit 64da084, made
by its own commands: tests/fixtures/catalog_main_64da084.sql) opens with this code, its
schema migrated by recorded, versioned migrations, and every brand answers with the
same adapter version as before; a crash during a migration leaves the old schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorag.app.container import Lorag
from lorag.core.db import Database
from lorag.core.errors import ServerError
from lorag.core.migrations import Migration, applied, migrate, statements
from lorag.testing.settings import fast_settings

FIXTURE = Path(__file__).parents[1] / "fixtures" / "catalog_main_64da084.sql"
ROOT = Path(__file__).parents[2]


def old_catalog(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "lorag.db"
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    return path


def served_before(path: Path) -> dict[tuple[str, str], int | None]:
    """What each brand served with the old code: its adapter's newest ready version id
    (the old ``resolve``), read with plain SQL before any migration runs."""
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT b.tenant_id, b.name, (SELECT a.id FROM adapters a WHERE a.tenant_id=b.tenant_id "
        "AND a.name=b.adapter_name AND a.status='ready' ORDER BY a.version DESC LIMIT 1) "
        "FROM brands b").fetchall()
    conn.close()
    return {(t, b): adapter_id for t, b, adapter_id in rows}


def columns(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    conn.close()
    return names


def test_an_old_catalog_opens_and_every_brand_serves_the_same_version(tmp_path):
    path = old_catalog(tmp_path / "data")
    before = served_before(path)
    assert len(before) == 4 and before[("acme", "plain")] is None
    app = Lorag(fast_settings(tmp_path / "data"))
    try:
        for (tenant, name), adapter_id in before.items():
            brand = app.brands.get(tenant, name)
            route = app.rollouts.route(tenant, brand, "any-user", [])
            assert (route.adapter.int_id if route.adapter else None) == adapter_id, (tenant, name)
            assert route.target == (f"{brand.adapter_name}@stable" if adapter_id else "@base")
        # globex's voice had v3 registered and deleted: its stable is v2, the newest left
        assert app.adapters.aliases("globex", "voice") == {"stable": 2}
        assert app.tenants.authenticate  # keys survive: the same table, untouched
        recorded = {(r["component"], r["version"]) for r in
                    app.catalog.query("SELECT component, version FROM schema_migrations")}
        assert {("adapters", 1), ("adapters", 2), ("brands", 1), ("audit", 1),
                ("answers", 1), ("answers", 2), ("rollouts", 1)} <= recorded
    finally:
        app.close()


def test_reopening_runs_nothing_again(tmp_path):
    old_catalog(tmp_path / "data")
    Lorag(fast_settings(tmp_path / "data")).rollouts
    db = Database(tmp_path / "data" / "lorag.db")
    from adapters.store import MIGRATIONS
    assert migrate(db, "adapters", MIGRATIONS) == []
    assert applied(db, "adapters") == len(MIGRATIONS)


def test_a_failing_migration_leaves_the_old_schema_and_runs_again(tmp_path):
    path = old_catalog(tmp_path / "data")
    db = Database(path)

    def half_then_fail(conn):
        conn.execute("ALTER TABLE brands ADD COLUMN half TEXT")
        conn.execute("UPDATE brands SET half='x'")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        migrate(db, "brands", [Migration(1, "breaks", half_then_fail)])
    assert "half" not in columns(path, "brands")
    assert applied(db, "brands") == 0
    ok = [Migration(1, "works", statements("ALTER TABLE brands ADD COLUMN half TEXT"))]
    assert migrate(db, "brands", ok) == [1]
    assert "half" in columns(path, "brands")


def test_a_process_killed_inside_a_migration_leaves_the_old_schema(tmp_path):
    path = old_catalog(tmp_path / "data")
    script = textwrap.dedent(f"""
        import os
        from lorag.core.db import Database
        from lorag.core.migrations import Migration, migrate
        def die(conn):
            conn.execute("ALTER TABLE brands ADD COLUMN target TEXT")
            conn.execute("UPDATE brands SET target = 'x'")
            os._exit(9)  # no rollback, no close: a crash
        migrate(Database({str(path)!r}), "brands", [Migration(1, "dies", die)])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 9
    assert "target" not in columns(path, "brands")
    app = Lorag(fast_settings(tmp_path / "data"))  # and the real migration then runs
    try:
        assert app.brands.get("acme", "support").target == "pirate@stable"
    finally:
        app.close()


def test_a_catalog_newer_than_the_code_is_refused_untouched(tmp_path):
    db = Database(tmp_path / "lorag.db")
    migrate(db, "thing", [Migration(1, "a", statements("CREATE TABLE a (x)")),
                          Migration(2, "b", statements("CREATE TABLE b (x)"))])
    with pytest.raises(ServerError) as err:
        migrate(db, "thing", [Migration(1, "a", statements("CREATE TABLE a (x)"))])
    assert err.value.code == "schema_too_new"


def test_migrations_must_be_numbered_in_order(tmp_path):
    with pytest.raises(ValueError):
        migrate(Database(tmp_path / "x.db"), "thing", [Migration(2, "b", statements())])


def test_a_fresh_catalog_gets_the_same_schema(tmp_path):
    app = Lorag(fast_settings(tmp_path / "data"))
    try:
        app.rollouts
        assert {"target", "split", "shadow", "store"} <= columns(tmp_path / "data" / "lorag.db",
                                                                  "brands")
    finally:
        app.close()


def test_answers_stored_before_groundedness_keep_their_rows_and_score_from_then_on(tmp_path):
    """A catalog at answers schema 1 (stored answers and readout rows, no groundedness)
    gains the columns by migration 2: old rows read as not scored, new ones add up."""
    from lorag.core.answers import MIGRATIONS, AnswerStore, Outcome
    db = Database(tmp_path / "lorag.db")
    db.apply_schema("CREATE TABLE tenants (id TEXT PRIMARY KEY)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO tenants VALUES ('acme')")
    assert migrate(db, "answers", MIGRATIONS[:1]) == [1]
    with db.transaction() as conn:
        conn.execute("INSERT INTO stored_answers (id, tenant_id, brand, created_at, completion, "
                     "messages, provenance) VALUES ('old', 'acme', 'support', 1.0, '{}', '[]', '{}')")
        conn.execute("INSERT INTO target_readout (tenant_id, brand, target, version, role, "
                     "requests) VALUES ('acme', 'support', 'voice@stable', 1, 'primary', 5)")
    store = AnswerStore(db)
    assert applied(db, "answers") == 2
    assert store.get("acme", "old").groundedness is None
    [row] = store.readout("acme", "support")
    assert (row["requests"], row["groundedness_sum"], row["groundedness_count"]) == (5, 0, 0)
    for score in (1.0, 0.5, None):
        store.count(Outcome("acme", "support", "voice@stable", 1, "primary", False, 0.1,
                            groundedness=score))
    [row] = store.readout("acme", "support")
    assert (row["requests"], row["groundedness_sum"], row["groundedness_count"]) == (8, 1.5, 2)
