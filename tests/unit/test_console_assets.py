"""The web console's files over HTTP (in-process, over fakes): each shipped file with its
media type and the security headers, nothing else under /console, and no page that loads
anything from another origin or runs inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lorag.app.settings import Settings
from server.app import create_app
from server.console.router import assets
from tests.unit.chat_fakes import FakeContainer

STATIC = Path(__file__).resolve().parents[2] / "server" / "console" / "static"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    container = FakeContainer(Settings(data_dir=tmp_path_factory.mktemp("c") / "data",
                                       environment="test"))
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client
    container.close()


def assert_secure(response) -> None:
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/index.html"])
def test_the_page_is_served_with_the_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/app.js">' in response.text
    assert_secure(response)


def test_every_shipped_file_is_served_with_its_media_type(client):
    shipped = sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file())
    assert sorted(assets()) == shipped
    for name in shipped:
        response = client.get(f"/console/{name}")
        assert response.status_code == 200, name
        assert response.content == (STATIC / name).read_bytes()
        assert_secure(response)
    assert client.get("/console/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/console.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/../server/app.py",
                                  "/console/%2e%2e/%2e%2e/pyproject.toml", "/console/pages",
                                  "/console/router.py"])
def test_anything_else_is_a_404_in_the_error_shape(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_no_file_loads_from_elsewhere_or_runs_inline_code():
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script
    assert not re.search(r"\s(style|on[a-z]+)=", html)  # no inline style or handler
    for path in STATIC.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path
            assert "innerHTML" not in text and "eval(" not in text, path


def test_the_console_is_not_in_the_api_reference(client):
    assert not any(p.startswith("/console") for p in client.get("/openapi.json").json()["paths"])
