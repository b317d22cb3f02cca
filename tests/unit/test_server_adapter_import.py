"""POST /admin/tenants/{tenant}/adapters/register names a path on the server: only folders
and archives under ``adapters.import_roots`` (by default ``<data_dir>/import/adapters``)
may be registered, checked once the path is resolved. Through the real HTTP app over the
real container (adapter store and validation; fake engine and embedder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.settings import AdapterSettings
from lorag.app.settings import Settings
from tests.reliability import inprocess
from tests.reliability.inprocess import ADMIN

REGISTER = "/admin/tenants/acme/adapters/register"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, tiny_lora_factory):
    """The app with tenant ``acme``; its import root holds ``voice`` (a folder),
    ``voice.zip``, a link to ``voice``; ``outside`` is an adapter outside the root."""
    root = tmp_path_factory.mktemp("import")
    app = inprocess.container(root / "data", tiny_model)
    app.tenants.create("acme")
    imports = app.layout.adapter_imports_dir
    lora = tiny_lora_factory(seed=1)
    shutil.copytree(lora, imports / "voice")
    shutil.make_archive(str(imports / "voice"), "zip", lora)
    (imports / "inside-link").symlink_to(imports / "voice")
    outside = shutil.copytree(lora, root / "elsewhere" / "outside")
    (imports / "escape-link").symlink_to(outside)
    (imports / "sub").mkdir()
    with inprocess.client(app) as client:
        yield client, app, outside
    app.close()


# (case, path: "{imports}" is the import root, "{outside}" an adapter outside it, status,
# error code)
CASES = [
    ("empty", "", 400, "invalid_value"),
    ("relative", "voice", 400, "invalid_value"),
    ("relative with ..", "../import/adapters/voice", 400, "invalid_value"),
    ("dot", ".", 400, "invalid_value"),
    ("nul byte", "{imports}/vo\x00ice", 400, "invalid_value"),
    ("outside the roots", "{outside}", 403, "path_not_allowed"),
    ("the file system root", "/", 403, "path_not_allowed"),
    ("the data directory", "{imports}/../..", 403, "path_not_allowed"),
    (".. escape", "{imports}/../../../elsewhere/outside", 403, "path_not_allowed"),
    (".. escape from a sub-folder", "{imports}/sub/../..", 403, "path_not_allowed"),
    ("link escape", "{imports}/escape-link", 403, "path_not_allowed"),
    ("link, then .. escape", "{imports}/inside-link/../../..", 403, "path_not_allowed"),
    ("missing, inside", "{imports}/missing", 404, "not_found"),
    ("allowed folder", "{imports}/voice", 201, None),
    ("allowed archive", "{imports}/voice.zip", 201, None),
    ("allowed through .. that stays inside", "{imports}/sub/../voice", 201, None),
    ("allowed link inside", "{imports}/inside-link", 201, None),
]


@pytest.mark.parametrize("case, path, status, code", CASES, ids=[c[0] for c in CASES])
def test_register_paths(server, case, path, status, code):
    client, app, outside = server
    path = path.format(imports=app.layout.adapter_imports_dir, outside=outside)
    before = len(app.adapters.list("acme"))
    response = client.post(REGISTER, headers=ADMIN, json={"name": "e5", "path": path})
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["name"] == "e5"
        assert len(app.adapters.list("acme")) == before + 1
        return
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("path", code), error
    assert len(app.adapters.list("acme")) == before  # nothing stored


def test_configured_roots_replace_the_default(server):
    client, app, outside = server
    default = str(app.layout.adapter_imports_dir / "voice")
    try:
        app.settings.adapters.import_roots = [outside.parent]
        assert client.post(REGISTER, headers=ADMIN,
                           json={"name": "e5", "path": str(outside)}).status_code == 201
        refused = client.post(REGISTER, headers=ADMIN, json={"name": "e5", "path": default})
        assert (refused.status_code, refused.json()["error"]["param"]) == (403, "path")
        app.settings.adapters.import_roots = []  # no path may be registered over HTTP
        refused = client.post(REGISTER, headers=ADMIN, json={"name": "e5", "path": default})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "path_not_allowed")
    finally:
        app.settings.adapters.import_roots = None


def test_the_default_import_folder_is_created_on_start(tmp_path, tiny_model):
    app = inprocess.container(tmp_path / "data", tiny_model)
    assert (tmp_path / "data" / "import" / "adapters").is_dir()
    app.close()


def test_import_roots_from_the_environment_must_be_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("LORAG_ADAPTERS__IMPORT_ROOTS", json.dumps([str(tmp_path), "/srv/a"]))
    assert Settings().adapters.import_roots == [tmp_path, Path("/srv/a")]
    with pytest.raises(ValidationError, match="absolute"):
        AdapterSettings(import_roots=["relative/adapters"])
