"""Resources that must not grow with traffic (the fast part of the load test's
flat-memory check)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from lorag.app.container import Lorag
from tests.reliability.harness import settings


def test_ingestion_jobs_do_not_leak_connections_or_file_descriptors(tmp_path, tiny_model):
    """Regression: each ingestion job runs on its own thread, and each thread's SQLite
    connections (catalog and tenant store) were kept until the container closed: +2
    connections, their file descriptors and page caches per job (the load test's
    server grew ~100 MiB per round)."""
    app = Lorag(settings(tmp_path / "data", tiny_model))
    app.tenants.create("acme")

    def jobs(count: int, round_: int) -> None:
        for i in range(count):
            job = app.documents.start_job("acme", [
                {"id": f"r{round_}-{i}-{j}", "text": f"store hours day {j} " * 20} for j in range(5)])
            assert app.documents.wait(job, 60)

    jobs(5, 0)
    fds = data_fds(app.settings.data_dir)
    assert fds > 0  # the catalog's own connection, at least: the count sees SQLite's files
    jobs(20, 1)
    store = app.retrieval.tenant_index("acme").store
    assert len(app.catalog._all) <= 3 and len(store.db._all) <= 3
    assert data_fds(app.settings.data_dir) <= fds + 3
    assert app.documents.count("acme") == 125
    app.close()


def data_fds(data_dir: Path) -> int:
    """This process's open file descriptors on files under ``data_dir``: what a job's
    connections hold (a raw total also counts whatever else the test process holds,
    e.g. threads earlier tests left, which comes and goes)."""
    inside = f"{data_dir.resolve()}{os.sep}"
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # closed since listed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(inside)
    return count
