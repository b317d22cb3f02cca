"""Per-tenant limits on a real ``lorag serve`` (tiny model on vLLM; the brands search
nothing, so the fake embedder spares loading the real one): a 429 with OpenAI's error
shape, ``Retry-After`` and ``x-ratelimit-*`` headers; the official ``openai`` client
retrying that 429 by itself and succeeding; limits changed through the admin API and
through the CLI (another process) while the server runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = {"model": "support", "max_tokens": 2, "temperature": 0.0,
        "messages": [{"role": "user", "content": "Hello?"}]}


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    process = LoragProcess(tmp_path_factory.mktemp("limits") / "data", env={
        "LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__KV_CACHE_BYTES": str(64 * 2**20),
        "LORAG_ENGINE__MAX_MODEL_LEN": "512", "LORAG_ENVIRONMENT": "test",
        "LORAG_LIMITS__REFRESH_SECONDS": "0.5", "PYTHONPATH": REPO,
        # starts faster; limits are the point here, and the brands search nothing
        "LORAG_ENGINE__ENGINE_PROCESS": "false", "LORAG_RETRIEVAL__EMBEDDER__BACKEND": "fake"})
    with process:
        yield process


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30)
    keys = {}
    for tenant in ("noisy", "quiet", "cli"):
        keys[tenant] = admin.post("/admin/tenants", json={"id": tenant}).json()["key"]["api_key"]
        assert admin.post(f"/admin/tenants/{tenant}/brands", json={
            "name": "support", "retrieval": {"mode": "off"}}).status_code == 201
    return keys


def chat(server, key: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})


def until_refused(server, key: str, at_least_ms: int, limit: int = 400) -> httpx.Response:
    """Chat until a 429 that asks to wait at least ``at_least_ms`` (so the next request,
    sent at once, is refused too)."""
    for _ in range(limit):
        response = chat(server, key)
        if response.status_code == 429 and int(response.headers["retry-after-ms"]) >= at_least_ms:
            return response
        assert response.status_code in (200, 429), response.text
    raise AssertionError("never refused")


def test_over_the_limit_is_a_429_with_retry_after_and_openai_headers(server, keys):
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30)
    assert chat(server, keys["noisy"]).status_code == 200  # no limit by default
    changed = admin.patch("/admin/tenants/noisy/limits", json={"requests_per_minute": 3})
    assert changed.status_code == 200, changed.text  # no restart
    statuses = [chat(server, keys["noisy"]) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert statuses[0].headers["x-ratelimit-remaining-requests"] == "2"
    refused = statuses[-1]
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded" and "Traceback" not in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert chat(server, keys["quiet"]).status_code == 200  # the other tenant is untouched
    metrics = httpx.get(server.url + "/metrics").text
    assert any('status="429"' in line and 'tenant="noisy"' in line and line.endswith(" 1.0")
               for line in metrics.splitlines() if line.startswith("lorag_http_requests_total")), metrics
    deadline = time.monotonic() + 10  # usage is written just after the answer
    while (usage := admin.get("/admin/tenants/noisy/usage").json())["requests"] < 4 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert usage["requests"] == 4 and usage["completion_tokens"] > 0  # served ones only
    assert 'lorag_tenant_usage_requests_total{tenant="noisy"} 4.0' in \
        httpx.get(server.url + "/metrics").text
    assert admin.delete("/admin/tenants/noisy/limits").json()["overrides"] == {}
    assert chat(server, keys["noisy"]).status_code == 200


def test_the_openai_client_retries_a_429_by_itself_and_succeeds(server, keys):
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30)
    attempts: list[int] = []
    http_client = httpx.Client(event_hooks={"response": [lambda r: attempts.append(r.status_code)]})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=keys["quiet"], max_retries=4,
                           http_client=http_client, timeout=60)
    client.models.list()  # the client is ready before the limit is reached
    admin.patch("/admin/tenants/quiet/limits", json={"requests_per_minute": 12})  # 5 s apart
    until_refused(server, keys["quiet"], at_least_ms=2500)
    attempts.clear()
    started = time.monotonic()
    completion = client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content is not None
    assert attempts[0] == 429 and attempts[-1] == 200, attempts
    assert time.monotonic() - started >= 1.0  # it waited as Retry-After said
    admin.delete("/admin/tenants/quiet/limits")


def test_a_limit_set_by_the_cli_applies_to_the_running_server(server, keys):
    env = {**server.env, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "lorag", "limits", "set", "cli",
                           "--requests-per-minute", "1"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    # the server reads overrides every refresh_seconds: wait until it has the CLI's (its
    # effective limits), not for a clock; chats sent before that ran under no limit
    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30)
    deadline = time.monotonic() + 30
    while admin.get("/admin/tenants/cli/limits").json()["effective"]["requests_per_minute"] != 1:
        assert time.monotonic() < deadline, "the running server never took the CLI's limit"
        time.sleep(0.1)
    statuses: list[int] = []
    while 429 not in statuses and time.monotonic() < deadline:
        statuses.append(chat(server, keys["cli"]).status_code)
    assert 429 in statuses and statuses.count(200) <= 2, statuses
    bad = subprocess.run([sys.executable, "-m", "lorag", "limits", "set", "cli",
                          "--max-concurrent-generations", "0"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "max_concurrent_generations" in bad.stderr
