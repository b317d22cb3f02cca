"""Crash safety: lorag processes (the CLI, and ``lorag serve`` over HTTP) SIGKILLed at
random moments during ingestion, document deletion, adapter registration and training.
After every kill the data directory is opened as a restarted process and checked: store
and index agree, nothing acknowledged is lost, nothing half-done is visible, and a
bystander tenant is untouched (see crash.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.reliability.crash import CrashLoop, write_sft_file
from tests.reliability.harness import write_figures

pytestmark = pytest.mark.integration

SHORT_OPS = ["ingest/server", "delete/server", "register/server"]
LONG_OPS = ["ingest/server", "ingest/cli", "delete/server", "delete/cli", "register/server",
            "register/cli", "train/cli"]


def crash_loop(tmp_path, tiny_model, loras, ops, runs: int, seed: int,
               calibrate: bool, first_at_progress: bool = False) -> CrashLoop:
    """``first_at_progress``: the first run is killed once seen partly done, the others
    at random moments (see CrashLoop.progress_run)."""
    loop = CrashLoop(tmp_path, tiny_model, loras, write_sft_file(tmp_path / "sft.jsonl"), seed)
    if not calibrate:  # kill every run at a random moment, from the first one
        loop.measured.update(ops)
    loop.check()
    for number, op in enumerate(itertools.islice(itertools.cycle(ops), runs)):
        run = loop.progress_run if first_at_progress and number == 0 else loop.random_run
        run(op)
        assert not loop.failures, loop.failures
    return loop


def test_three_kills_lose_nothing_acknowledged(tmp_path, tiny_model, loras):
    loop = crash_loop(tmp_path, tiny_model, loras, SHORT_OPS, runs=3, seed=1, calibrate=False,
                      first_at_progress=True)
    figures = loop.figures()
    write_figures("crash_short", figures)
    assert len(loop.runs) == 3
    assert loop.runs[0].op == "ingest/server" and loop.runs[0].killed_mid_operation, figures
    assert figures["killed_mid_operation"] >= 1, figures


@pytest.mark.reliability
def test_crash_loop(tmp_path, tiny_model, loras):
    loop = crash_loop(tmp_path, tiny_model, loras, LONG_OPS, runs=42, seed=20261121,
                      calibrate=True)
    figures = loop.figures()
    write_figures("crash_long", figures)
    assert figures["killed_mid_operation"] >= 20, figures
    assert all(op["acknowledged"] for op in figures["by_operation"].values()), figures


def test_a_restart_fails_interrupted_jobs_before_serving_and_only_those(tmp_path, tiny_model):
    """Regression: the sweep of jobs a dead process left running ran in the background
    warm-up, after the server already answered, so it could also fail a job started by
    a request in between (and an upload's files were then removed under its job)."""
    import threading
    import time

    from tests.reliability import inprocess
    from tests.reliability.inprocess import bearer

    app = inprocess.container(tmp_path / "data", tiny_model)
    app.tenants.create("acme")
    key = app.tenants.issue_key("acme").secret
    left = app.jobs.create("acme", "ingest")
    app.jobs.update(left, status="running")  # by a process that was killed
    sweep = app.jobs.fail_interrupted

    swept = threading.Event()

    def slow_sweep():  # a slow catalog widens the window the old code left open
        time.sleep(1.0)
        try:
            return sweep()
        finally:
            swept.set()

    app.jobs.fail_interrupted = slow_sweep
    with inprocess.client(app) as client:
        assert client.get(f"/v1/jobs/{left}", headers=bearer(key)).json()["status"] == "failed"
        job = client.post("/v1/documents", headers=bearer(key), json={"documents": [
            {"id": f"d{i}", "text": f"text {i}"} for i in range(50)]}).json()
        assert app.documents.wait(job["id"], 60)
        assert swept.wait(60)  # whenever the sweep runs, it has run by now
        done = client.get(f"/v1/jobs/{job['id']}", headers=bearer(key)).json()
        assert done["status"] == "succeeded" and done["error"] is None, done
    app.close()


def test_a_tenant_created_again_after_a_crash_mid_delete_starts_empty(tmp_path, tiny_model, loras):
    """Regression: deleting a tenant commits its rows, then removes its files; killed in
    between, the files stayed, and a new tenant of the same id got the old one's
    documents (its store.db) back."""
    from lorag.app.container import Lorag
    from tests.reliability.harness import settings

    app = Lorag(settings(tmp_path / "data", tiny_model))
    app.tenants.create("acme")
    app.documents.ingest("acme", [{"id": "contract", "text": "the previous owner's contract"}])
    app.adapters.register("acme", "voice", loras[0])
    with app.catalog.transaction() as conn:  # SIGKILL after the commit, before the files
        conn.execute("DELETE FROM tenants WHERE id = 'acme'")
    app.close()
    again = Lorag(settings(tmp_path / "data", tiny_model))
    again.tenants.create("acme")
    assert again.documents.list("acme") == [] and again.adapters.list("acme") == []
    assert again.retrieval.search("acme", "contract", mode="lexical") == []
    assert not (again.layout.adapters_dir / "acme").exists()
    again.close()


def test_uploads_a_killed_server_left_are_removed_when_it_starts_again(tmp_path, tiny_model):
    """Regression: uploaded files live until their job ends; a server killed meanwhile
    left them in <data>/uploads for good (its jobs are failed on restart, so nothing
    would ever read or remove them)."""
    from tests.reliability import inprocess

    app = inprocess.container(tmp_path / "data", tiny_model)
    app.tenants.create("acme")
    left = [app.layout.uploads_dir / "acme" / ("0" * 32) / "notes.txt",
            app.layout.uploads_dir / ".adapters" / "tmpdead" / "adapter.zip"]
    for path in left:
        path.parent.mkdir(parents=True)
        path.write_text("left by a killed server")
    with inprocess.client(app):
        assert not any(path.exists() for path in left)
    app.close()
