"""Hostile input: schemathesis over lorag's own OpenAPI document, fuzzed documents and
fuzzed adapters. Every hostile request gets a clear 4xx naming the parameter (or, for
one bad document inside an accepted batch, a per-document failure of the job with its
code: a batch is never refused for one document), and changes nothing else: the
snapshot of every tenant's documents, chunks, adapters, brands and adapter files is
the same before and after, and no file appears outside the data directory.

Fast part: in-process app (real container, recording fake engine), ~300 schemathesis
cases and every fuzz case below. Long part (``reliability``): schemathesis with at
least 1,000 cases against ``lorag serve`` on 127.0.0.1 serving the tiny model on vLLM.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from safetensors.numpy import load_file, save

from lorag.testing import documents
from tests.reliability import inprocess
from tests.reliability.fuzz import CONFIG, TENANT, data_snapshot, files_outside, run_schemathesis
from tests.reliability.harness import child_env, write_figures
from tests.reliability.inprocess import ADMIN, ADMIN_KEY, bearer

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_BODY_BYTES = 1024 * 1024


# -- the app under attack -------------------------------------------------------------------

class Target:
    """An in-process app with two tenants holding documents, an adapter and a brand."""

    def __init__(self, root: Path, model: Path, loras: list[Path]):
        self.root = root
        self.app = inprocess.container(root / "data", model, max_body_bytes=MAX_BODY_BYTES)
        self.app.settings.ingest.max_document_bytes = MAX_DOCUMENT_BYTES
        self.keys = {}
        for n, tenant in enumerate((TENANT, "globex")):
            self.app.tenants.create(tenant)
            self.keys[tenant] = self.app.tenants.issue_key(tenant).secret
            self.app.adapters.register(tenant, "voice", loras[n])
            self.app.brands.create(tenant, "support", adapter="voice")
            self.app.documents.ingest(tenant, [
                {"id": f"{tenant}-{i}", "text": f"{tenant} store hours day {i}",
                 "metadata": {"i": i}} for i in range(5)])

    def headers(self, path: str) -> dict:
        return ADMIN if path.startswith("/admin") else bearer(self.keys[TENANT])

    def restore(self) -> None:
        """Put back what a generated case may remove: the tenant, its key."""
        if not self.app.tenants.exists(TENANT):
            self.app.tenants.create(TENANT)
        try:
            self.app.tenants.authenticate(self.keys[TENANT])
        except Exception:  # noqa: BLE001 - revoked by a DELETE .../keys/{id} case
            self.keys[TENANT] = self.app.tenants.issue_key(TENANT).secret


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_model, loras):
    target = Target(tmp_path_factory.mktemp("hostile"), tiny_model, loras)
    with inprocess.client(target.app) as client:
        target.client = client
        yield target
    target.app.close()


def assert_unchanged(target, action):
    """Run ``action()``; the data must be as before and nothing written outside data/."""
    before, outside = data_snapshot(target.app), files_outside(target.root, target.root / "data")
    result = action()
    assert data_snapshot(target.app) == before
    assert files_outside(target.root, target.root / "data") == outside
    return result


def with_cpu_time(action):
    """``(action(), the CPU seconds this process spent on it)``: the work a request made
    the in-process server do, which other processes loading the machine do not stretch
    (wall-clock time does)."""
    started = time.process_time()
    result = action()
    return result, time.process_time() - started


def assert_4xx(response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["message"] and "Traceback" not in response.text
    return error


def wait_job(target, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = target.client.get(f"/v1/jobs/{job_id}", headers=bearer(target.keys[TENANT])).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.02)
    raise TimeoutError(job_id)


# -- schemathesis ---------------------------------------------------------------------------

def test_schemathesis_in_process(target):
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.client.app, config=CONFIG)
    figures = run_schemathesis(schema, cases_per_operation=6, headers=target.headers,
                               restore=target.restore)
    write_figures("schemathesis_short", figures)
    assert figures["failures"] == 0, figures["failure_examples"]
    assert figures["cases"] >= 150


# -- fuzzed documents ---------------------------------------------------------------------

def nested_html(depth: int) -> bytes:
    return b"<div>" * depth + b"</div>" * depth


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


DOCUMENT_FILES = [  # (file name, bytes or how to make them, the job's failure code)
    ("binary.txt", bytes(range(256)) * 64, "binary_content"),
    ("latin1.txt", "café crème brûlée".encode("latin-1") * 100, "invalid_encoding"),
    ("utf16-broken.txt", b"\xff\xfe" + b"\x00\xd8" * 50, "invalid_encoding"),
    ("huge.txt", b"word " * (MAX_DOCUMENT_BYTES // 5 + 10), "document_too_large"),
    ("nested.html", nested_html(20_000), "empty_document"),
    ("bomb.zip", None, "unsupported_type"),
    ("bad.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8, "invalid_pdf"),
    ("lines.jsonl", b'{"id": 1}\nnot json\n' + b"[" * 50_000 + b"\n", None),
    ("empty.md", b"   \n\n\t", "empty_document"),
    # Office files, e-books and spreadsheets (made by lorag.testing.documents).
    ("bomb.docx", documents.zip_bomb_docx, "archive_bomb"),
    ("locked.pdf", documents.encrypted_pdf, "encrypted_document"),
    ("rows.xlsx", documents.long_spreadsheet, "too_many_rows"),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "encrypted_document"),
    ("broken.pptx", b"PK\x03\x04" + bytes(64), "invalid_document"),
    ("broken.epub", zip_of({"mimetype": b"application/epub+zip"}), "invalid_document"),
    ("headers.eml", b"\x00\x01 not an e-mail at all", "invalid_document"),
]


def zip_bomb(size: int = 64 * 2**20) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"\0" * size)
    return buffer.getvalue()


@pytest.mark.parametrize("name,content,code", DOCUMENT_FILES, ids=[f[0] for f in DOCUMENT_FILES])
def test_fuzzed_document_uploads_fail_alone(target, name, content, code):
    content = zip_bomb() if content is None else content() if callable(content) else content
    key = bearer(target.keys[TENANT])

    def upload():
        response = target.client.post("/v1/documents", headers=key,
                                      files=[("files", (name, content, "application/octet-stream"))])
        assert response.status_code == 202, response.text
        return wait_job(target, response.json()["id"])

    job = assert_unchanged(target, upload)
    assert job["status"] == "succeeded" and job["completed"] == 0 and job["failed"] >= 1, job
    for failure in job["failures"]:
        assert failure["code"] == code if code else failure["code"].startswith("invalid"), job["failures"]
        assert failure["message"] and (failure["item"] == name or name in failure["item"])


@pytest.mark.parametrize("document,code", [
    ({"id": "nul", "text": "a\x00b" * 100}, "binary_content"),
    ({"id": "controls", "text": "\x01\x02\x03\x04" * 100}, "binary_content"),
    ({"id": "big", "text": "word " * (MAX_DOCUMENT_BYTES // 5 + 10)}, "document_too_large"),
    ({"id": "ctl\x07id", "text": "fine text"}, "invalid_document"),
    ({"id": "html", "text": "<div>" * 10_000}, None),
])
def test_fuzzed_json_documents_fail_alone(target, document, code):
    key = bearer(target.keys[TENANT])
    body = json.dumps({"documents": [document]}).encode()

    def send():
        response = target.client.post("/v1/documents", headers={**key, "Content-Type": "application/json"},
                                      content=body)
        assert response.status_code == 202, response.text
        return wait_job(target, response.json()["id"])

    if code is None:  # valid (markup is text in a JSON document): ingested, then removed
        job = send()
        assert job["completed"] == 1
        target.client.delete(f"/v1/documents/{document['id']}", headers=key)
        return
    job = assert_unchanged(target, send)
    assert job["failed"] == 1 and job["failures"][0]["code"] == code, job
    assert job["failures"][0]["item"] == document["id"]


@pytest.mark.parametrize("body,headers,status,param", [
    (b"\xff\xfe\xfd not json", {}, 400, "body"),
    (b"[" * 100_000 + b"]" * 100_000, {}, 400, "body"),
    (b'{"documents": "x"}', {}, 400, "documents"),
    (b'{"documents": [{"id": "", "text": "x"}]}', {}, 400, "documents[0].id"),
    (b'{"documents": []}', {}, 400, "documents"),
    (b'{"documents": [{"id": "s", "text": "\\ud800 lone surrogate"}]}', {}, 400, "body"),
    (b"x" * (MAX_BODY_BYTES + 1), {}, 413, "body"),
    (b"{}", {"Content-Length": "12abc"}, 413, "body"),
    (b"--x\r\n\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 400, "body"),
    (b"--x\r\nContent-Disposition: form-data\r\n\r\nx\r\n--x--\r\n",
     {"Content-Type": "multipart/form-data; boundary=x"}, 400, "body"),
    (b"--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 400, "files"),
])
def test_hostile_request_bodies_are_4xx_with_param(target, body, headers, status, param):
    key = bearer(target.keys[TENANT])
    response = assert_unchanged(target, lambda: target.client.post(
        "/v1/documents", content=body,
        headers={"Content-Type": "application/json", **key, **headers}))
    assert_4xx(response, status, param)


def test_chunked_body_over_the_limit_is_413(target):
    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    response = assert_unchanged(target, lambda: target.client.post(
        "/v1/documents", content=chunks(),
        headers={"Content-Type": "application/json", **bearer(target.keys[TENANT])}))
    assert_4xx(response, 413, "body")


# -- fuzzed adapters ---------------------------------------------------------------------

def adapter_files(lora: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in lora.iterdir() if p.is_file()}


def as_zip(files: dict[str, bytes], symlinks: dict[str, str] = {}) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, link in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, link)
    return buffer.getvalue()


def as_tar(files: dict[str, bytes], links: dict[str, tuple[bytes, str]] = {}) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buffer.getvalue()


def tensors(lora: Path) -> dict[str, np.ndarray]:
    return load_file(str(lora / "adapter_model.safetensors"))


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    return save(arrays)


def raw_safetensors(header: object, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + data


def adapter_cases(lora: Path) -> list[tuple[str, str, bytes, int, str]]:
    """(case, file name, archive bytes, status, param)."""
    good = adapter_files(lora)
    weights = good["adapter_model.safetensors"]
    config = json.loads(good["adapter_config.json"])
    arrays = tensors(lora)
    first = sorted(arrays)[0]

    def changed(name: str, data: bytes | None, drop: str | None = None) -> bytes:
        """The good adapter as a zip, with one file replaced (or added)."""
        files = {**good, name: data}
        return as_zip({k: v for k, v in files.items() if k != drop})

    def weights_zip(data: bytes) -> bytes:
        return changed("adapter_model.safetensors", data)

    shape = arrays[first].shape
    wrong_shape = {**arrays, first: np.zeros((shape[0] + 1, shape[1]), dtype=np.float32)}
    nested = b"[" * 100_000 + b"]" * 100_000
    string_offsets = {first: {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}
    weights_error, archive_error = (400, "adapter.weights"), (400, "file")
    return [
        ("truncated weights", "a.zip", weights_zip(weights[:len(weights) // 2]), *weights_error),
        ("random weights", "a.zip", weights_zip(bytes(range(256)) * 40), *weights_error),
        ("huge header length", "a.zip", weights_zip(struct.pack("<Q", 2**62) + b"{}"),
         *weights_error),
        ("string offsets", "a.zip", weights_zip(raw_safetensors(string_offsets, b"\0" * 4)),
         *weights_error),
        ("nested header", "a.zip", weights_zip(raw_safetensors(nested)), *weights_error),
        ("nested config", "a.zip", changed("adapter_config.json", nested), 400, "adapter.config"),
        ("wrong shape", "a.zip", weights_zip(safetensors_bytes(wrong_shape)), *weights_error),
        ("rank too high", "a.zip",
         changed("adapter_config.json", json.dumps({**config, "r": 512}).encode()),
         400, "adapter.rank"),
        ("pickle weights", "a.zip",
         changed("adapter_model.bin", b"\x80\x04pickle", drop="adapter_model.safetensors"),
         *weights_error),
        ("not a zip", "a.zip", b"PK\x03\x04 definitely not a zip", *archive_error),
        ("dot-dot entry", "a.zip", as_zip({**good, "../../escaped.txt": b"x"}), *archive_error),
        ("absolute entry", "a.tar.gz", as_tar({**good, "/tmp/escaped-abs.txt": b"x"}),
         *archive_error),
        ("zip symlink", "a.zip", as_zip(good, {"link": "/etc/passwd"}), *archive_error),
        ("tar symlink", "a.tar.gz", as_tar(good, {"link": (tarfile.SYMTYPE, "/etc/passwd")}),
         *archive_error),
        ("tar hardlink", "a.tar.gz", as_tar(good, {"hard": (tarfile.LNKTYPE, "/etc/passwd")}),
         *archive_error),
        ("zip bomb", "a.zip", zip_bomb(32 * 2**20), 413, "file"),
        ("many entries", "a.zip", as_zip({**good, **{f"f{i}": b"" for i in range(1001)}}),
         413, "file"),
        ("wrong suffix", "a.rar", as_zip(good), *archive_error),
    ]


def test_fuzzed_adapters_are_refused_and_change_nothing(target, loras):
    figures = {"cases": 0}
    for case, filename, archive, status, param in adapter_cases(loras[0]):
        response = assert_unchanged(target, lambda: target.client.post(
            f"/admin/tenants/{TENANT}/adapters", headers=ADMIN, data={"name": "fuzzed"},
            files={"file": (filename, archive, "application/octet-stream")}))
        assert response.status_code == status, (case, response.text)
        assert response.json()["error"]["param"] == param, (case, response.json())
        figures["cases"] += 1
    assert not (target.root / "escaped.txt").exists() and not Path("/tmp/escaped-abs.txt").exists()
    write_figures("fuzzed_adapters", figures)


def test_adapter_folders_with_links_or_outside_trees_are_refused(target, loras):
    imports = target.app.layout.adapter_imports_dir
    folder = shutil.copytree(loras[0], imports / "linked")
    (folder / "link").symlink_to("/etc/passwd")
    response = assert_unchanged(target, lambda: target.client.post(
        f"/admin/tenants/{TENANT}/adapters/register", headers=ADMIN,
        json={"name": "fuzzed", "path": str(folder)}))
    assert_4xx(response, 400, "adapter.files")
    for path, status in (("/", 403), ("/usr", 403), ("", 400)):  # the empty path was a 413
        response = assert_unchanged(target, lambda: target.client.post(
            f"/admin/tenants/{TENANT}/adapters/register", headers=ADMIN,
            json={"name": "fuzzed", "path": path}))
        assert_4xx(response, status, "path")
    target.app.settings.adapters.import_roots = [Path("/")]  # as the CLI may name any path
    try:
        for path in ("/", "/usr"):  # refused at the first link, not listed whole first (was 35 s)
            response, cpu_seconds = assert_unchanged(target, lambda: with_cpu_time(
                lambda: target.client.post(f"/admin/tenants/{TENANT}/adapters/register",
                                           headers=ADMIN, json={"name": "fuzzed", "path": path})))
            assert response.status_code in (400, 413) and cpu_seconds < 3, (cpu_seconds, response.text)
    finally:
        target.app.settings.adapters.import_roots = None
    tree = imports / "tree"
    for i in range(1500):  # entries, not only files, count against the limit
        (tree / f"d{i}").mkdir(parents=True)
    response = assert_unchanged(target, lambda: target.client.post(
        f"/admin/tenants/{TENANT}/adapters/register", headers=ADMIN,
        json={"name": "fuzzed", "path": str(tree)}))
    assert_4xx(response, 413, "adapter.files")


# -- long part ---------------------------------------------------------------------------

@pytest.mark.reliability
def test_schemathesis_against_lorag_serve(tmp_path, tiny_model, loras):
    from lorag.testing.server import LoragProcess

    env = child_env(tmp_path / "data", tiny_model, LORAG_RETRIEVAL__EMBEDDER__BACKEND="fake",
                    LORAG_SERVER__MAX_BODY_BYTES=str(MAX_BODY_BYTES))
    env.pop("LORAG_SERVER__ADMIN_KEY", None)
    with LoragProcess(tmp_path / "data", env=env) as server:
        admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60)
        keys = {}

        def restore():
            if admin.get(f"/admin/tenants/{TENANT}").status_code == 404:
                keys[TENANT] = admin.post("/admin/tenants", json={"id": TENANT}).json()["key"]["api_key"]
            elif httpx.get(server.url + "/v1/models", headers=bearer(keys[TENANT])).status_code == 401:
                keys[TENANT] = admin.post(f"/admin/tenants/{TENANT}/keys").json()["api_key"]

        restore()
        voice = shutil.copytree(loras[0], tmp_path / "data" / "import" / "adapters" / "voice")
        admin.post(f"/admin/tenants/{TENANT}/adapters/register",
                   json={"name": "voice", "path": str(voice)}).raise_for_status()
        admin.post(f"/admin/tenants/{TENANT}/brands", json={"name": "support", "adapter": "voice"})
        httpx.post(server.url + "/v1/documents", headers=bearer(keys[TENANT]), json={"documents": [
            {"id": f"d{i}", "text": f"store hours day {i}"} for i in range(5)]}).raise_for_status()
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json", config=CONFIG)
        headers = lambda path: server.admin_headers if path.startswith("/admin") else bearer(keys[TENANT])  # noqa: E731
        figures = run_schemathesis(schema, cases_per_operation=30, headers=headers,
                                   restore=restore)
        assert httpx.get(server.url + "/ready").status_code == 200  # still serving
        admin.close()
    write_figures("schemathesis_long", figures)
    assert figures["failures"] == 0, figures["failure_examples"]
    assert figures["cases"] >= 1000, figures


@pytest.mark.parametrize("method,path,kwargs,param", [
    ("GET", "/v1/documents", {"params": {"offset": 2**64}}, "offset"),
    ("DELETE", f"/admin/tenants/{TENANT}/keys/{2**70}", {}, "key_id"),
    ("DELETE", f"/admin/tenants/{TENANT}/adapters/voice", {"params": {"version": 2**64}}, "version"),
    ("GET", f"/admin/tenants/{TENANT}/adapters/voice/versions/{2**64}/gates", {}, "version"),
    ("PUT", f"/admin/tenants/{TENANT}/adapters/voice/aliases/canary", {"json": {"version": 2**64}},
     "version"),
    ("POST", "/v1/search", {"json": {"query": "store", "top_k": True}}, "top_k"),
    ("POST", "/v1/chat/completions", {"json": {"model": "support", "seed": 2**64, "messages": [
        {"role": "user", "content": "hi"}]}}, "seed"),
    ("POST", "/v1/chat/completions", {"json": {"model": "support", "stream": 1, "messages": [
        {"role": "user", "content": "hi"}]}}, "stream"),
])
def test_out_of_range_and_mistyped_numbers_are_400(target, method, path, kwargs, param):
    """Regression (found by schemathesis against lorag serve): integers past SQLite's
    64 bits were 500s (OverflowError); `true` was taken for 1 and 1 for `true`."""
    headers = target.headers(path)
    response = assert_unchanged(target, lambda: target.client.request(method, path,
                                                                      headers=headers, **kwargs))
    assert_4xx(response, 400, param)
