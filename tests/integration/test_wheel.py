"""The product as a package: the wheel ``pip wheel .`` builds holds the demo assets, and
``lorag serve --demo`` from a fresh virtual environment holding only that wheel (its
dependencies taken from the project's environment) sets up the demo in ``./data`` of its
working directory and answers a chat, with no checkout on its path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import openai
import pytest

from lorag.testing.server import child_environ, die_with_parent, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "lorag" / "demo_assets"
CONSOLE = REPO / "server" / "console" / "static"
# Repository tools and build leftovers, not package data.
NOT_SHIPPED = ("make_sets.py", "__pycache__", ".pyc")
BUILD_LEFTOVERS = shutil.ignore_patterns(".git", ".venv", ".bench-venv", "data", ".cache", "build",
                                         "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a clean copy of the sources (no stale ``build/``)."""
    source = tmp_path_factory.mktemp("source") / "lorag"
    shutil.copytree(REPO, source, ignore=BUILD_LEFTOVERS)
    out = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)], timeout=300)
    (built,) = out.glob("lorag-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; the project's environment is
    on its path after its own site-packages (a .pth line), for the dependencies only."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], timeout=120)
    python = root / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       timeout=60).strip())
    # Plain path lines: the project environment's own .pth files (its editable lorag) stay unread.
    (purelib / "zz-project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)], timeout=300)
    return root


@pytest.fixture(scope="module")
def smollm2_models_dir() -> Path:
    """The prepared SmolLM2 folder's parent in the checkout's default data dir (prepared
    once, shared with ``make run``, the benchmarks and test_http_demo.py)."""
    from adapters.models import default_model_path
    from lorag.core.layout import Layout

    return default_model_path(Layout(REPO / "data")).parent


def test_the_wheel_holds_every_demo_asset(wheel):
    expected = {f"lorag/{p.relative_to(ASSETS.parent).as_posix()}" for p in ASSETS.rglob("*")
                if p.is_file() and not any(n in p.as_posix() for n in NOT_SHIPPED)}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lorag/demo_assets/demo.json", "lorag/demo_assets/general.txt",
            "lorag/demo_assets/adapters/pirate/adapter_model.safetensors"} <= expected
    assert expected <= names, sorted(expected - names)
    assert not any("make_sets" in n or "__pycache__" in n for n in names)
    console = {p.relative_to(REPO).as_posix() for p in CONSOLE.rglob("*") if p.is_file()}
    assert "server/console/static/index.html" in console and console <= names, sorted(console - names)


def test_installed_wheel_serves_the_demo_from_its_working_directory(venv, tmp_path,
                                                                    smollm2_models_dir):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "models").symlink_to(smollm2_models_dir)
    env = installed_env(venv)
    where = json.loads(run([str(venv / "bin" / "python"), "-c", WHERE], cwd=work, env=env, timeout=120))
    for module, path in where.items():
        assert Path(path).is_relative_to(venv), (module, path)

    port = free_port()
    # The PEFT engine starts in seconds; this test is about packaging, test_http_demo.py
    # runs the demo on vLLM.
    env |= {"LORAG_ENGINE__BACKEND": "peft", "LORAG_SERVER__ADMIN_KEY": "admin-" + "x" * 32}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([str(venv / "bin" / "lorag"), "serve", "--demo", "--host",
                               "127.0.0.1", "--port", str(port)], cwd=work, env=env, stdout=log,
                              stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, tmp_path / "serve.log", timeout=600)
        keys = json.loads((work / "data" / "demo-keys.json").read_text())  # ./data by default
        client = openai.OpenAI(base_url=url + "/v1", api_key=keys["tenants"]["acme"]["api_key"],
                               max_retries=0, timeout=300)
        assert sorted(m.id for m in client.models.list()) == ["acme-pirate", "acme-support"]
        answer = client.chat.completions.create(
            model="acme-pirate", temperature=0, max_tokens=24,
            messages=[{"role": "user", "content": "How long is the warranty on Acme devices?"}])
        assert answer.choices[0].message.content
        citations = answer.model_extra["citations"]
        assert citations and all(c["document_id"].startswith("acme/") for c in citations)
        for page in ("/console", "/console/pages/chat.js"):  # the web console, from the wheel
            assert httpx.get(url + page, timeout=30).status_code == 200, page
    finally:
        server.terminate()
        assert server.wait(timeout=120) == 0, (tmp_path / "serve.log").read_text()[-4000:]
        log.close()


WHERE = ("import json, lorag, lorag.app.demo, server, adapters, retrieval, ingest; print(json.dumps("
         "{m.__name__: m.__file__ for m in (lorag, lorag.app.demo, server, adapters, retrieval, ingest)}"
         " | {'assets': str(lorag.app.demo.ASSETS)}))")


def installed_env(venv: Path) -> dict[str, str]:
    """The environment for the installed lorag: nothing that puts the checkout on its path."""
    env = {k: v for k, v in child_environ().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                  "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-4000:]
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"not ready in {timeout} s: {log.read_text()[-4000:]}")


def run(command: list[str], *, timeout: float, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout
