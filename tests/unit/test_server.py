"""The HTTP layer over fakes (in-process, no engine): auth, error shapes, validation as
400 with the field named, limits, streaming framing, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
import threading

import time

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from lorag.app.settings import Settings
from server.app import create_app
from tests.unit.chat_fakes import FakeContainer

ADMIN_KEY = "admin-" + "x" * 40


@pytest.fixture
def container(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", environment="test")
    settings.server.admin_key = SecretStr(ADMIN_KEY)
    settings.server.max_body_bytes = 64 * 1024
    container = FakeContainer(settings)
    for tenant in ("acme", "other"):
        container.tenants.create(tenant)
    yield container
    container.close()


@pytest.fixture
def keys(container) -> dict[str, str]:
    return {t: container.tenants.issue_key(t).secret for t in ("acme", "other")}


@pytest.fixture
def client(container):
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(**extra) -> dict:
    return {"model": "support", "messages": [{"role": "user", "content": "what is w1?"}], **extra}


def assert_error(response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


# -- auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, bearer("lrg-unknown"), bearer(ADMIN_KEY),
                                     {"Authorization": "Basic abc"}])
def test_tenant_routes_need_a_tenant_key(client, headers):
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                         ("POST", "/v1/search"), ("GET", "/v1/documents"), ("GET", "/v1/jobs/x")]:
        response = client.request(method, path, headers=headers, json={})
        error = assert_error(response, 401, code="invalid_api_key")
        assert error["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_admin_routes_matrix(client, keys):
    assert_error(client.get("/admin/tenants"), 401)
    assert_error(client.get("/admin/tenants", headers=bearer("nope")), 401)
    assert_error(client.get("/admin/tenants", headers=bearer(keys["acme"])), 403, code="forbidden")
    response = client.get("/admin/tenants", headers=bearer(ADMIN_KEY))
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["data"]] == ["acme", "other"]


def test_admin_disabled_without_an_admin_key(container, keys):
    container.settings.server.admin_key = None
    with TestClient(create_app(container)) as client:
        assert_error(client.get("/admin/tenants", headers=bearer(ADMIN_KEY)), 401)
        assert_error(client.get("/admin/tenants", headers=bearer(keys["acme"])), 403)


def test_admin_creates_a_tenant_whose_key_works_once_shown(client):
    response = client.post("/admin/tenants", headers=bearer(ADMIN_KEY), json={"id": "newco"})
    assert response.status_code == 201
    key = response.json()["key"]["api_key"]
    assert client.get("/v1/models", headers=bearer(key)).json() == {"object": "list", "data": []}
    listed = client.get("/admin/tenants/newco/keys", headers=bearer(ADMIN_KEY)).json()["data"]
    assert len(listed) == 1 and key not in json.dumps(listed)
    assert_error(client.post("/admin/tenants", headers=bearer(ADMIN_KEY), json={"id": "newco"}),
                 409, param="tenant")
    assert_error(client.post("/admin/tenants", headers=bearer(ADMIN_KEY), json={"id": "Bad Id"}),
                 400, param="tenant")


# -- chat -----------------------------------------------------------------------------------

def test_chat_completion_shape_citations_and_usage(client, keys):
    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]),
                           json=chat_body(retrieval={"top_k": 2}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "support"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there",
                                             "tool_calls": None, "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert [c["number"] for c in body["citations"]] == [1, 2]
    assert body["citations"][0] == {"number": 1, "document_id": "doc-1", "chunk_id": 101,
                                    "title": "Title 1", "source": "file1.md", "score": 0.9,
                                    "location": None}
    usage = body["usage"]
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + 2


def test_another_tenants_brand_is_a_404_on_model(client, keys):
    for brand in ("secret", "missing"):
        response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]),
                               json=chat_body(model=brand))
        error = assert_error(response, 404, param="model", code="not_found")
        assert "other" not in error["message"]


def test_models_lists_only_the_callers_brands(client, keys):
    acme = client.get("/v1/models", headers=bearer(keys["acme"])).json()["data"]
    assert [m["id"] for m in acme] == ["plain", "support"]
    assert [m["id"] for m in client.get("/v1/models", headers=bearer(keys["other"])).json()["data"]] \
        == ["secret"]
    assert client.get("/v1/models/support", headers=bearer(keys["acme"])).status_code == 200
    assert_error(client.get("/v1/models/secret", headers=bearer(keys["acme"])), 404, param="model")


def sse_events(response) -> list:
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_stream_frames_citations_first_then_deltas_then_usage(client, keys):
    with client.stream("POST", "/v1/chat/completions", headers=bearer(keys["acme"]),
                       json=chat_body(stream=True)) as response:
        response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["number"] for c in events[0]["citations"]] == [1, 2, 3, 4, 5]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == "Hello there"
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 2
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events)


def test_stream_include_usage_sends_a_final_usage_chunk(client, keys):
    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]),
                           json=chat_body(stream=True, stream_options={"include_usage": True}))
    events = sse_events(response)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 2
    assert "usage" not in events[-2]


def test_error_mid_stream_is_an_error_event_without_traceback(client, container, keys):
    container.engine.fail_after = 1
    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]),
                           json=chat_body(stream=True))
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][len("data: "):])["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert "boom" not in response.text and "/secret/path" not in response.text


def test_unexpected_failure_is_a_generic_500_and_the_next_request_works(client, container, keys):
    container.engine.fail_after = 0
    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]), json=chat_body())
    assert_error(response, 500, code="internal_error")
    assert "boom" not in response.text
    container.engine.fail_after = None
    assert client.post("/v1/chat/completions", headers=bearer(keys["acme"]),
                       json=chat_body()).status_code == 200


# -- malformed and hostile requests ---------------------------------------------------------

@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "support"}, "messages"),
    (chat_body(messages=[]), "messages"),
    (chat_body(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    (chat_body(messages=[{"role": "user", "content": "hi"}, {"role": "user"}]), "messages[1].content"),
    (chat_body(messages=[{"role": "user", "content": 42}]), "messages[0].content"),
    (chat_body(temperature=5), "temperature"),
    (chat_body(top_p=0), "top_p"),
    (chat_body(max_tokens=0), "max_tokens"),
    (chat_body(max_tokens=10**6), "max_tokens"),
    (chat_body(n=9), "n"),
    (chat_body(top_logprobs=2), "top_logprobs"),
    (chat_body(logit_bias={"a": 1}), "logit_bias"),
    (chat_body(response_format={"type": "xml"}), "response_format"),
    (chat_body(tools=[{"type": "function", "function": {"name": "bad name"}}]),
     "tools[0].function.name"),
    (chat_body(tool_choice="sometimes"), "tool_choice"),
    (chat_body(messages=[{"role": "tool", "content": "42"}]), "messages[0].tool_call_id"),
    (chat_body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant"}]),
     "messages[1].content"),
    (chat_body(parallel_tool_calls=False), "parallel_tool_calls"),
    (chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat_body(retrieval={"top_k": 0}), "retrieval.top_k"),
    (chat_body(retrieval={"mode": "magic"}), "retrieval.mode"),
    (chat_body(retrieval={"filters": {"a": {"$where": "1"}}}), "retrieval.filters.a"),
    (chat_body(retreival={"top_k": 1}), "retreival"),
    (chat_body(stream="yes please"), "stream"),
])
def test_malformed_chat_requests_are_400_naming_the_field(client, keys, body, param):
    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]), json=body)
    assert_error(response, 400, param=param)


def test_invalid_json_and_wrong_content_type(client, keys):
    headers = bearer(keys["acme"]) | {"Content-Type": "application/json"}
    assert_error(client.post("/v1/chat/completions", headers=headers, content=b"{not json"),
                 400, param="body", code="invalid_json")
    assert_error(client.post("/v1/chat/completions", headers=headers, content=b"[1, 2]"), 400)


def test_body_over_the_limit_is_413_on_body(client, keys):
    big = chat_body(messages=[{"role": "user", "content": "x" * 70_000}])
    assert_error(client.post("/v1/chat/completions", headers=bearer(keys["acme"]), json=big),
                 413, param="body", code="payload_too_large")

    def chunks():
        for _ in range(100):
            yield b" " * 1024

    response = client.post("/v1/chat/completions", headers=bearer(keys["acme"]) |
                           {"Content-Type": "application/json"}, content=chunks())
    assert_error(response, 413, param="body")


def test_unknown_routes_and_methods_have_the_error_shape(client, keys):
    assert_error(client.get("/v1/nothing", headers=bearer(keys["acme"])), 404, code="not_found")
    assert_error(client.delete("/v1/chat/completions", headers=bearer(keys["acme"])), 405)


# -- readiness, docs, metrics ---------------------------------------------------------------

def test_ready_is_503_until_warm_up_finishes(container):
    release, ready = threading.Event(), threading.Event()
    engine_warm_up = container.engine.warm_up

    async def held_warm_up():  # warm-up lasts until the test releases it
        while not release.is_set():
            await asyncio.sleep(0.01)
        await engine_warm_up()  # /ready also asks the engine itself

    container.engine.warm_up = held_warm_up
    with TestClient(create_app(container, on_ready=ready.set)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert_error(client.get("/ready"), 503, code="warming_up")
        release.set()
        assert ready.wait(60), "warm-up did not finish once released"
        assert client.get("/ready").status_code == 200


def test_ready_is_503_when_the_engine_stops_serving(container):
    """The remote engine with no healthy server: /ready says why, and says it at once."""
    with TestClient(create_app(container)) as client:
        wait = time.monotonic() + 30
        while client.get("/ready").status_code != 200 and time.monotonic() < wait:
            time.sleep(0.05)
        container.engine.warmed = False
        container.engine.not_ready_reason = lambda: "no healthy inference server (0 of 2)"
        error = assert_error(client.get("/ready"), 503, code="engine_unavailable")
        assert "0 of 2" in error["message"]
        container.engine.warmed = True
        container.engine.health = lambda: {"servers": 2, "servers_healthy": 1}
        assert client.get("/ready").json() == {"status": "ready", "servers": 2,
                                               "servers_healthy": 1}


def test_failed_warm_up_keeps_ready_503_with_the_reason(container):
    async def broken():
        raise RuntimeError("no model here")

    container.engine.warm_up = broken
    failures, failed = [], threading.Event()

    def on_failure(exc: Exception) -> None:
        failures.append(exc)
        failed.set()

    with TestClient(create_app(container, on_failure=on_failure)) as client:
        assert failed.wait(60), "the warm-up failure was not reported"
        error = assert_error(client.get("/ready"), 503, code="warm_up_failed")
        assert "no model here" in error["message"]
    assert len(failures) == 1


def test_openapi_documents_every_route_and_400s_not_422s(client):
    document = client.get("/openapi.json").json()
    text = json.dumps(document)
    assert "422" not in document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "HTTPValidationError" not in text
    assert "DocumentsCreate" in document["components"]["schemas"]
    for path in ("/v1/chat/completions", "/v1/models", "/v1/search", "/v1/documents",
                 "/v1/documents/{document_id}", "/v1/jobs/{job_id}", "/admin/tenants",
                 "/admin/tenants/{tenant}/brands", "/admin/tenants/{tenant}/adapters",
                 "/admin/tenants/{tenant}/training", "/health", "/ready", "/metrics"):
        assert path in document["paths"], path
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_tokens_ttft_and_retrieval_by_tenant_and_brand(client, keys):
    client.post("/v1/chat/completions", headers=bearer(keys["acme"]), json=chat_body())
    client.post("/v1/chat/completions", headers=bearer(keys["acme"]), json=chat_body(model="nope"))
    client.get("/v1/models")
    text = client.get("/metrics").text
    assert ('lorag_http_requests_total{brand="support",method="POST",route="/v1/chat/completions",'
            'status="200",tenant="acme"} 1.0') in text
    assert ('lorag_http_requests_total{brand="",method="POST",route="/v1/chat/completions",'
            'status="404",tenant="acme"} 1.0') in text
    assert 'lorag_http_requests_total{brand="",method="GET",route="/v1/models",status="401",tenant=""}' in text
    assert 'lorag_chat_tokens_total{brand="support",kind="completion",tenant="acme"} 2.0' in text
    assert 'lorag_chat_time_to_first_token_seconds_count{brand="support",tenant="acme"} 1.0' in text
    assert 'lorag_retrieval_duration_seconds_count{route="chat",tenant="acme"} 1.0' in text
    assert "lorag_http_request_duration_seconds_bucket" in text


# Statuses a route answers for a reason beyond the rules of test_openapi_documents_*.
SPECIFIC_STATUSES = {
    ("post", "/v1/chat/completions"): {404, 409, 429, 503},  # brand/adapter; not served; limits; engine
    ("post", "/v1/documents"): {429},  # an ingestion quota is used up
    ("post", "/v1/search"): {409},  # the tenant was indexed with another embedder
    ("delete", "/v1/documents/{document_id}"): {409},
    ("post", "/admin/tenants"): {409},
    ("post", "/admin/tenants/{tenant}/brands"): {409},
    ("post", "/admin/tenants/{tenant}/adapters/register"): {403},  # outside the import roots
    ("get", "/ready"): {503},
}


def test_openapi_documents_the_error_statuses_of_every_route(client):
    """Every route documents, with the error schema: 400 and 413 when it takes a body or
    a constrained parameter, 401 when it needs a key, 403 on /admin, 404 with a path
    parameter, and the statuses listed above."""
    document = client.get("/openapi.json").json()
    error_schema = {"$ref": "#/components/schemas/ErrorResponse"}
    operations = [(method, path, op) for path, item in document["paths"].items()
                  for method, op in item.items()]
    assert {(m, p) for m, p, _ in operations} >= set(SPECIFIC_STATUSES)
    for method, path, operation in operations:
        expected = set(SPECIFIC_STATUSES.get((method, path), ()))
        parameters = operation.get("parameters", [])
        if "requestBody" in operation:
            expected |= {400, 413}
        if any(p["in"] == "query" or _constrained(p["schema"]) for p in parameters):
            expected.add(400)
        if operation.get("security"):
            expected.add(401)
        if path.startswith("/admin"):
            expected.add(403)
        if any(p["in"] == "path" for p in parameters):
            expected.add(404)
        documented = {int(s) for s in operation["responses"] if int(s) >= 400}
        assert documented >= expected, (method, path, sorted(expected - documented))
        for status in documented:
            content = operation["responses"][str(status)]["content"]
            assert content["application/json"]["schema"] == error_schema, (method, path, status)


def _constrained(schema: dict) -> bool:
    return schema.get("type") == "integer" or bool(
        {"maximum", "minimum", "maxLength", "minLength", "pattern"} & set(schema))
