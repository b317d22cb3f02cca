"""Secrets and confinement: API keys are stored only as SHA-256 hashes and never appear
in a log (every logger at DEBUG, during key issue, use, misuse and revocation, over
HTTP and the CLI); admin routes refuse tenant keys; uploaded files never land outside
the data directory, whatever their names say."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability import inprocess
from tests.reliability.fuzz import files_outside
from tests.reliability.harness import child_env, lorag_command
from tests.reliability.inprocess import ADMIN, ADMIN_KEY, bearer

TENANT = "acme"


@pytest.fixture
def served(tmp_path, tiny_model):
    app = inprocess.container(tmp_path / "data", tiny_model)
    with inprocess.client(app) as client:
        yield app, client
    app.close()


def data_bytes(data_dir) -> bytes:
    """Every byte lorag wrote: the catalog with its WAL, stores, indexes, adapters."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def test_keys_are_stored_hashed_and_never_logged(served, tmp_path, caplog, capfd):
    app, client = served
    for name in ["", *logging.root.manager.loggerDict]:  # every logger, whatever set it before
        caplog.set_level(logging.DEBUG, logger=name)
    created = client.post("/admin/tenants", json={"id": TENANT}, headers=ADMIN).json()
    first = created["key"]["api_key"]
    second = client.post(f"/admin/tenants/{TENANT}/keys", headers=ADMIN).json()
    wrong = [first[:-1] + ("A" if first[-1] != "A" else "B"), "lrg-" + "z" * 43, ADMIN_KEY]
    assert client.get("/v1/models", headers=bearer(first)).status_code == 200
    assert client.get("/v1/models", headers=bearer(second["api_key"])).status_code == 200
    for key in wrong:
        assert client.get("/v1/models", headers=bearer(key)).status_code == 401
        assert client.post("/v1/search", json={"query": "x"}, headers=bearer(key)).status_code == 401
    assert client.get("/admin/tenants", headers=bearer(first)).status_code == 403
    listed = client.get(f"/admin/tenants/{TENANT}/keys", headers=ADMIN)
    assert first not in listed.text and second["api_key"] not in listed.text
    assert all(re.fullmatch(r"lrg-.{4}\.\.\..{4}", k["hint"]) for k in listed.json()["data"])
    client.delete(f"/admin/tenants/{TENANT}/keys/{second['id']}", headers=ADMIN)
    assert client.get("/v1/models", headers=bearer(second["api_key"])).status_code == 401
    metrics = client.get("/metrics").text
    # the CLI issues keys too, with its logging at DEBUG
    cli = subprocess.run(lorag_command("--log-level", "DEBUG", "tenants", "create", "globex"),
                         env=child_env(app.settings.data_dir, app.settings.engine.model),
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    cli_key = re.search(r"lrg-[A-Za-z0-9_-]{43}", cli.stdout).group(0)

    secrets = [first, second["api_key"], cli_key, *wrong]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records) + cli.stderr + \
        "".join(capfd.readouterr())
    issued = [r for r in caplog.records if r.getMessage().startswith("issued key")]
    assert len(issued) == 2 and "issued key" in cli.stderr  # logging was on, in both processes
    stored = data_bytes(app.settings.data_dir)
    for secret in secrets:
        assert secret not in logged
        assert secret not in metrics
        assert secret.encode() not in stored
    hashes = {r["key_hash"] for r in app.catalog.query("SELECT key_hash FROM api_keys")}
    assert hashlib.sha256(first.encode()).hexdigest() in hashes
    assert hashlib.sha256(cli_key.encode()).hexdigest() in hashes


def test_admin_routes_refuse_tenant_keys_and_v1_refuses_the_admin_key(served):
    app, client = served
    key = client.post("/admin/tenants", json={"id": TENANT}, headers=ADMIN).json()["key"]["api_key"]
    document = client.get("/openapi.json").json()
    checked = 0
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{tenant\}", TENANT, path)
        concrete = re.sub(r"\{[a-z_:]+\}", "1", concrete)
        for method in operations:
            if path.startswith("/admin"):
                for headers, status in ((bearer(key), 403), ({}, 401), (bearer("lrg-x"), 401)):
                    response = client.request(method, concrete, headers=headers, json={})
                    assert response.status_code == status, (method, path, response.text)
            elif path.startswith("/v1"):
                response = client.request(method, concrete, headers=bearer(ADMIN_KEY), json={})
                assert response.status_code == 401, (method, path, response.text)
            checked += 1
    assert checked >= 30 and app.tenants.exists(TENANT)


HOSTILE_NAMES = ["../../evil1.txt", "/tmp/evil2.txt", "..\\..\\evil3.txt", "a/../../evil4.txt",
                 "....//....//evil5.txt", "%2e%2e%2fevil6.txt", "~/evil7.txt", " ../evil8.txt "]


def test_uploads_stay_in_the_data_directory(served, tmp_path, loras):
    app, client = served
    key = client.post("/admin/tenants", json={"id": TENANT}, headers=ADMIN).json()["key"]["api_key"]
    data_dir = app.settings.data_dir
    before = files_outside(tmp_path.parent, data_dir)
    files = [("files", (name, f"hostile name {i}".encode(), "text/plain"))
             for i, name in enumerate(HOSTILE_NAMES)]
    job = client.post("/v1/documents", files=files, headers=bearer(key)).json()
    deadline = time.monotonic() + 60
    while (state := client.get(f"/v1/jobs/{job['id']}", headers=bearer(key)).json())["status"] \
            not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state["status"] == "succeeded" and state["completed"] == len(HOSTILE_NAMES), state
    ids = {d["id"] for d in client.get("/v1/documents", headers=bearer(key)).json()["data"]}
    assert all("/" not in i and "\\" not in i and not i.startswith(".") for i in ids), ids
    with open(loras[0] / "adapter_config.json", "rb") as config:
        response = client.post(f"/admin/tenants/{TENANT}/adapters", headers=ADMIN,
                               data={"name": "voice"},
                               files={"file": ("../../../evil-adapter.zip", config.read())})
    assert response.status_code == 400, response.text
    assert files_outside(tmp_path.parent, data_dir) == before
    assert not [p for root in (Path("/tmp"), Path.cwd()) for p in root.glob("evil*")]
    deadline = time.monotonic() + 60  # an upload's files live as long as its job
    while any((data_dir / "uploads" / TENANT).iterdir()):
        assert time.monotonic() < deadline, list((data_dir / "uploads" / TENANT).iterdir())
        time.sleep(0.1)
