"""The HTTP API end to end: a real ``lorag serve`` (uvicorn, vLLM on the tiny model,
the packaged embedder, SQLite/FAISS) set up through the admin API, called with the
official ``openai`` client (sync, async, streaming) and httpx.

One server for the module: two tenants (acme, globex), each with a LoRA adapter (one
registered from a folder, one uploaded as an archive), brands, and documents (a JSON
batch, and uploaded files)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from typing import Callable, Literal

import httpx
import numpy as np
import openai
import pytest
from pydantic import BaseModel, Field
from transformers import AutoTokenizer

from lorag.app.settings import ChatSettings
from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_MODEL_LEN = 1024
# The budget tests reserve long completions; stopping at the first common letter keeps
# them from generating it.
QUICK_STOP = ["e", "t", "a", " "]
SYSTEM = "You are a helpful assistant."

ACME_DOCS = [
    ("hours", "Store hours", "The Acme store opens at nine in the morning and closes at six in "
     "the evening, every day except public holidays. On holidays the store is closed and the "
     "support line answers questions from ten until four."),
    ("returns", "Returns", "Returns are accepted within thirty days of delivery when the item "
     "is unused and complete. Refunds go back to the original payment method within five "
     "business days after the returned item arrives at the Acme warehouse."),
    ("warranty", "Warranty", "The Acme warranty covers defects in materials and workmanship for "
     "two years from purchase. It does not cover water damage, drops or batteries that wore "
     "out through normal use. Keep the receipt as proof of purchase."),
    ("reset", "Resetting the device", "To reset the Acme device, hold the power button for ten "
     "seconds until the light blinks twice. The reset keeps your settings but clears the "
     "pairing list, so pair your phone again afterwards."),
    ("shipping", "Shipping", "Acme orders ship within two business days and arrive within a "
     "week. Express shipping arrives in two days for a fee of twelve dollars. Tracking "
     "numbers are sent by email when the parcel leaves the warehouse."),
    ("prices", "Prices", "The blue Acme model costs forty dollars and the red model costs fifty "
     "dollars. A bundle of both models costs eighty dollars. Prices include tax but not "
     "shipping, and they are the same in every store."),
]
GLOBEX_FILES = {
    "launch.md": "# Launch schedule\n\nGlobex launches its cargo rocket every second Tuesday "
                 "from the northern pad. Launches move to Wednesday when the wind is strong.",
    "fuel.txt": "Globex rockets burn a mixture of kerosene and liquid oxygen. The tanks are "
                "filled two hours before every launch by the ground crew.",
}


# -- the server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_model, tiny_lora_factory, tmp_path_factory):
    data = tmp_path_factory.mktemp("http") / "data"
    env = {"LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__MAX_MODEL_LEN": str(MAX_MODEL_LEN),
           "LORAG_ENGINE__KV_CACHE_BYTES": str(128 * 2**20), "LORAG_ENVIRONMENT": "test",
           "LORAG_SERVER__MAX_BODY_BYTES": str(2 * 2**20),
           # the test adapters' folder: the one registration over HTTP may read from
           "LORAG_ADAPTERS__IMPORT_ROOTS": json.dumps([str(tiny_lora_factory(seed=1).parent)])}
    # a generous deadline: on a loaded 2-core machine vLLM's processes start in minutes
    with LoragProcess(data, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def wait_until(condition: Callable[[], bool], failure: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail with ``failure`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


def wait_job(client: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = ok(client.get(f"/v1/jobs/{job_id}"))
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


@pytest.fixture(scope="module")
def keys(server, admin, tiny_lora_factory, tmp_path_factory) -> dict[str, str]:
    keys = {t: ok(admin.post("/admin/tenants", json={"id": t}), 201)["key"]["api_key"]
            for t in ("acme", "globex")}
    # acme: an adapter registered from a folder; brands with and without it
    ok(admin.post("/admin/tenants/acme/adapters/register",
                  json={"name": "voice", "path": str(tiny_lora_factory(seed=1))}), 201)
    for brand, adapter in (("acme-support", "voice"), ("acme-base", None)):
        ok(admin.post("/admin/tenants/acme/brands", json={
            "name": brand, "adapter": adapter, "system_prompt": SYSTEM}), 201)
    # globex: an adapter uploaded as an archive
    archive = shutil.make_archive(str(tmp_path_factory.mktemp("zip") / "globex"), "zip",
                                  tiny_lora_factory(seed=2))
    with open(archive, "rb") as file:
        uploaded = ok(admin.post("/admin/tenants/globex/adapters", data={"name": "rocket"},
                                 files={"file": ("globex.zip", file, "application/zip")}), 201)
    assert uploaded["version"] == 1 and uploaded["tenant"] == "globex"
    ok(admin.post("/admin/tenants/globex/brands", json={
        "name": "globex-bot", "adapter": "rocket", "system_prompt": "You speak for Globex.",
        "retrieval": {"mode": "lexical", "top_k": 2}}), 201)
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {keys['acme']}"}) as acme:
        job = ok(acme.post("/v1/documents", json={"documents": [
            {"id": i, "title": t, "text": x, "metadata": {"topic": i}} for i, t, x in ACME_DOCS]}), 202)
        assert wait_job(acme, job["id"])["completed"] == len(ACME_DOCS)
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {keys['globex']}"}) as globex:
        files = [("files", (name, text.encode(), "text/plain")) for name, text in GLOBEX_FILES.items()]
        job = ok(globex.post("/v1/documents", files=files), 202)
        done = wait_job(globex, job["id"])
        assert done["status"] == "succeeded" and done["completed"] == 2, done
    return keys


def tenant_client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="module")
def acme(server, keys):
    with tenant_client(server, keys["acme"]) as client:
        yield client


@pytest.fixture(scope="module")
def globex(server, keys):
    with tenant_client(server, keys["globex"]) as client:
        yield client


@pytest.fixture(scope="module")
def oai(server, keys) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=keys["acme"], max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    if param is not None:
        assert error["param"] == param, error
    return error


# -- chat with the openai client -----------------------------------------------------------

def test_models_are_the_callers_brands(oai, server, keys):
    assert sorted(m.id for m in oai.models.list()) == ["acme-base", "acme-support"]
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=keys["globex"], max_retries=0)
    assert [m.id for m in other.models.list()] == ["globex-bot"]
    assert oai.models.retrieve("acme-support").owned_by == "acme"


def test_sync_chat_is_grounded_cited_and_counted(oai):
    response = oai.chat.completions.create(
        model="acme-support", messages=user("When does the store open?"), max_tokens=16)
    assert response.model == "acme-support" and response.object == "chat.completion"
    assert isinstance(response.choices[0].message.content, str)
    assert response.choices[0].finish_reason in ("stop", "length")
    assert 0 < response.usage.completion_tokens <= 16
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    citations = response.model_extra["citations"]
    assert [c["number"] for c in citations] == list(range(1, len(citations) + 1))
    assert citations[0]["document_id"] == "hours"
    assert {c["document_id"] for c in citations} <= {d[0] for d in ACME_DOCS}


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_citations_are_the_chunks_search_returned(oai, acme, mode):
    question = "How long does the warranty cover defects?"
    hits = ok(acme.post("/v1/search", json={"query": question, "mode": mode, "top_k": 3}))["data"]
    response = oai.chat.completions.create(
        model="acme-support", messages=user(question), max_tokens=8,
        extra_body={"retrieval": {"mode": mode, "top_k": 3}})
    citations = response.model_extra["citations"]
    floor = ChatSettings().min_dense_score  # hits under it that share no word are not relevant
    relevant = [h for h in hits if h["lexical_match"] or (h["dense_score"] or -1) >= floor]
    assert [(c["document_id"], c["chunk_id"], c["title"]) for c in citations] == \
        [(h["document_id"], h["chunk_id"], h["title"]) for h in relevant]
    assert [c["score"] for c in citations] == pytest.approx([h["score"] for h in relevant])
    assert hits[0]["document_id"] == "warranty" and citations


def test_nothing_relevant_gives_no_citations(oai, acme):
    question = "zebra quantum violin"
    hits = ok(acme.post("/v1/search", json={"query": question, "mode": "dense"}))["data"]
    assert hits and max(h["score"] for h in hits) < ChatSettings().min_dense_score
    response = oai.chat.completions.create(
        model="acme-support", messages=user(question), max_tokens=4,
        extra_body={"retrieval": {"mode": "dense"}})
    assert response.model_extra["citations"] == []


def test_retrieval_filters_and_off(oai):
    filtered = oai.chat.completions.create(
        model="acme-support", messages=user("store"), max_tokens=4,
        extra_body={"retrieval": {"filters": {"topic": "prices"}}})
    assert {c["document_id"] for c in filtered.model_extra["citations"]} == {"prices"}
    off = oai.chat.completions.create(model="acme-support", messages=user("store"), max_tokens=4,
                                      extra_body={"retrieval": {"mode": "off"}})
    assert off.model_extra["citations"] == []


def test_stream_matches_the_whole_answer_and_carries_citations(oai):
    kwargs = dict(model="acme-support", messages=user("How do I reset the device?"),
                  max_tokens=24, temperature=0)
    whole = oai.chat.completions.create(**kwargs)
    chunks = list(oai.chat.completions.create(**kwargs, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].model_extra["citations"] == whole.model_extra["citations"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


def test_the_adapter_changes_the_answer(oai):
    kwargs = dict(messages=user("Tell me about the store."), max_tokens=16, temperature=0,
                  extra_body={"retrieval": {"mode": "off"}})
    with_adapter = oai.chat.completions.create(model="acme-support", **kwargs)
    base = oai.chat.completions.create(model="acme-base", **kwargs)
    assert with_adapter.usage.prompt_tokens == base.usage.prompt_tokens  # same prompt
    assert with_adapter.choices[0].message.content != base.choices[0].message.content


def test_async_client_serves_tenants_concurrently_each_from_its_own_documents(server, keys):
    async def ask(key: str, brand: str, question: str):
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key,
                                      max_retries=0) as client:
            return await client.chat.completions.create(model=brand, messages=user(question),
                                                        max_tokens=12)

    async def main():
        return await asyncio.gather(*[
            ask(keys["acme"], "acme-support", "What do the models cost?") if i % 2 == 0 else
            ask(keys["globex"], "globex-bot", "When does the rocket launch?") for i in range(8)])

    for i, response in enumerate(asyncio.run(main())):
        documents = {c["document_id"] for c in response.model_extra["citations"]}
        if i % 2 == 0:
            assert response.model == "acme-support" and documents <= {d[0] for d in ACME_DOCS}
        else:
            assert response.model == "globex-bot" and documents and documents <= set(GLOBEX_FILES)


def test_async_stream(server, keys):
    async def main():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys["globex"],
                                      max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="globex-bot", messages=user("What fuel do the rockets burn?"),
                max_tokens=10, stream=True)
            return [chunk async for chunk in stream]

    chunks = asyncio.run(main())
    assert chunks[0].model_extra["citations"][0]["document_id"] == "fuel.txt"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


# -- the token budget at its edges -------------------------------------------------------

def prompt_tokens(tokenizer, messages: list[dict]) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_budget_edge_prompt_plus_max_tokens_equal_to_the_context(oai, tokenizer):
    question = "Is there anything else? " * 20
    tokens = prompt_tokens(tokenizer, [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": question}])
    off = {"retrieval": {"mode": "off"}}
    fits = oai.chat.completions.create(model="acme-support", messages=user(question),
                                       max_tokens=MAX_MODEL_LEN - tokens, stop=QUICK_STOP,
                                       extra_body=off)
    assert fits.usage.prompt_tokens == tokens
    assert fits.usage.completion_tokens <= MAX_MODEL_LEN - tokens
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="acme-support", messages=user(question),
                                    max_tokens=MAX_MODEL_LEN - tokens + 1, extra_body=off)
    assert err.value.param == "messages" and err.value.code == "context_length_exceeded"


def test_budget_drops_the_lowest_ranked_sources_first(oai, acme):
    question = "store model prices warranty returns shipping reset"
    hits = ok(acme.post("/v1/search", json={"query": question, "mode": "lexical", "top_k": 6}))["data"]
    assert len(hits) == 6
    seen = []
    for max_tokens in range(200, MAX_MODEL_LEN - 120, 80):
        response = oai.chat.completions.create(
            model="acme-support", messages=user(question), max_tokens=max_tokens, stop=QUICK_STOP,
            extra_body={"retrieval": {"mode": "lexical", "top_k": 6}})
        cited = [c["chunk_id"] for c in response.model_extra["citations"]]
        assert cited == [h["chunk_id"] for h in hits[:len(cited)]]  # a prefix: top-ranked kept
        assert response.usage.prompt_tokens + max_tokens <= MAX_MODEL_LEN
        seen.append(len(cited))
    assert seen == sorted(seen, reverse=True) and seen[0] == 6 and seen[-1] == 0, seen
    assert any(0 < n < 6 for n in seen), seen


def test_budget_drops_oldest_turns_when_sources_are_not_enough(oai, tokenizer):
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"Question number {i} about the store hours?"},
                  {"role": "assistant", "content": f"Answer number {i}: the store opens at nine."}]
    messages = turns + [{"role": "user", "content": "And on holidays?"}]
    everything = prompt_tokens(tokenizer, [{"role": "system", "content": SYSTEM}] + messages)
    max_tokens = MAX_MODEL_LEN - everything + 40  # about two turns too many, even without sources
    response = oai.chat.completions.create(model="acme-support", messages=messages,
                                           max_tokens=max_tokens, stop=QUICK_STOP)
    assert response.model_extra["citations"] == []
    assert response.usage.prompt_tokens + max_tokens <= MAX_MODEL_LEN
    assert response.usage.prompt_tokens < everything


# -- malformed and hostile requests -------------------------------------------------------

@pytest.mark.parametrize("kwargs,param", [
    (dict(temperature=3), "temperature"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(max_tokens=10**6), "max_tokens"),
    (dict(n=9), "n"),  # up to 8 answers
    (dict(top_p=1.5), "top_p"),
    (dict(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    (dict(messages=[]), "messages"),
    (dict(extra_body={"retrieval": {"mode": "psychic"}}), "retrieval.mode"),
    (dict(extra_body={"retrieval": {"top_k": 10**4}}), "retrieval.top_k"),
    (dict(extra_body={"retrieval": {"filters": {"bad key!": "x"}}}), "retrieval.filters"),
    (dict(extra_body={"unknown_option": 1}), "unknown_option"),
])
def test_bad_parameters_are_400_naming_them(oai, kwargs, param):
    request = dict(model="acme-support", messages=user("hi"), max_tokens=4) | kwargs
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(**request)
    assert err.value.param == param, err.value.body


def test_hostile_bodies(acme):
    headers = {"Content-Type": "application/json"}
    nested = b"[" * 100_000 + b"]" * 100_000
    assert_error(acme.post("/v1/chat/completions", content=nested, headers=headers), 400)
    assert_error(acme.post("/v1/chat/completions", content=b"\xff\xfe\x00garbage", headers=headers),
                 400, "body")
    huge = json.dumps({"model": "acme-support", "messages": user("x" * 3 * 2**20)})
    assert_error(acme.post("/v1/chat/completions", content=huge, headers=headers), 413, "body")
    assert_error(acme.post("/v1/chat/completions", json={
        "model": "acme-support' OR 1=1 --", "messages": user("hi")}), 404, "model")
    assert_error(acme.post("/v1/chat/completions", json={
        "model": "acme-support\x00", "messages": user("hi")}), 404, "model")
    assert_error(acme.get("/v1/documents/../../../etc/passwd"), 404)
    assert_error(acme.get("/v1/documents/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), 404)
    assert_error(acme.post("/v1/search", json={"query": "x", "filters": {"a": [1, 2]}}), 400)
    assert_error(acme.post("/v1/documents", json={"documents": [{"text": "no id"}]}), 400,
                 "documents[0].id")
    assert_error(acme.post("/v1/documents", files=[("other", ("a.txt", b"x"))]), 400, "files")


def test_the_server_still_serves_after_hostile_requests(oai):
    assert oai.chat.completions.create(model="acme-support", messages=user("hi"),
                                       max_tokens=2).usage.completion_tokens >= 1


# -- auth and tenant isolation ------------------------------------------------------------

V1_ROUTES = [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/v1/models/x"),
             ("POST", "/v1/search"), ("POST", "/v1/documents"), ("GET", "/v1/documents"),
             ("GET", "/v1/documents/hours"), ("DELETE", "/v1/documents/hours"),
             ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x")]


def test_auth_matrix(server, keys):
    for key in (None, "lrg-not-a-key", server.admin_key, "x" * 10_000):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        for method, path in V1_ROUTES:
            response = httpx.request(method, server.url + path, headers=headers, json={})
            assert_error(response, 401)
    for key, status in ((None, 401), ("lrg-not-a-key", 401), (keys["acme"], 403)):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        for method, path in [("GET", "/admin/tenants"), ("POST", "/admin/tenants"),
                             ("DELETE", "/admin/tenants/acme"), ("GET", "/admin/tenants/acme/brands")]:
            assert_error(httpx.request(method, server.url + path, headers=headers, json={}), status)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="lrg-wrong",
                      max_retries=0).models.list()


def test_tenant_isolation_through_every_route(globex, acme):
    acme_job = ok(acme.get("/v1/jobs"))["data"][0]["id"]
    assert_error(globex.post("/v1/chat/completions", json={
        "model": "acme-support", "messages": user("hi")}), 404, "model")
    assert_error(globex.get("/v1/models/acme-support"), 404, "model")
    assert_error(globex.get("/v1/documents/hours"), 404, "document_id")
    assert_error(globex.delete("/v1/documents/hours"), 404, "document_id")
    assert_error(globex.get(f"/v1/jobs/{acme_job}"), 404, "job_id")
    assert acme_job not in {j["id"] for j in ok(globex.get("/v1/jobs"))["data"]}
    assert {d["id"] for d in ok(globex.get("/v1/documents"))["data"]} == set(GLOBEX_FILES)
    for mode in ("dense", "lexical", "hybrid"):
        hits = ok(globex.post("/v1/search", json={"query": "Acme store warranty returns",
                                                  "mode": mode, "document_ids": ["hours", "warranty"]}))
        assert hits["data"] == []
        hits = ok(globex.post("/v1/search", json={"query": "Acme store warranty", "mode": mode}))
        assert {h["document_id"] for h in hits["data"]} <= set(GLOBEX_FILES)
    assert ok(acme.get("/v1/documents/hours"))["id"] == "hours"  # untouched


def test_documents_lifecycle(acme):
    job = ok(acme.post("/v1/documents", json={"documents": [
        {"id": "temp", "text": "A temporary note about the Acme picnic on Friday."}]}), 202)
    assert wait_job(acme, job["id"])["status"] == "succeeded"
    assert ok(acme.get("/v1/documents/temp"))["chunks"] == 1
    page = ok(acme.get("/v1/documents", params={"limit": 2}))
    assert len(page["data"]) == 2 and page["has_more"]
    assert ok(acme.delete("/v1/documents/temp")) == {"id": "temp", "object": "document", "deleted": True}
    assert_error(acme.get("/v1/documents/temp"), 404)
    hits = ok(acme.post("/v1/search", json={"query": "picnic Friday", "mode": "lexical"}))["data"]
    assert all(h["document_id"] != "temp" for h in hits)


# -- failures stay local; disconnects abort -------------------------------------------------

def test_a_broken_brand_fails_alone(admin, oai, tiny_lora_factory):
    ok(admin.post("/admin/tenants/acme/adapters/register",
                  json={"name": "doomed", "path": str(tiny_lora_factory(seed=3))}), 201)
    ok(admin.post("/admin/tenants/acme/brands", json={"name": "acme-doomed", "adapter": "doomed"}), 201)
    assert oai.chat.completions.create(model="acme-doomed", messages=user("hi"), max_tokens=2)
    ok(admin.delete("/admin/tenants/acme/adapters/doomed"))

    async def mixed():
        async with openai.AsyncOpenAI(base_url=str(oai.base_url), api_key=oai.api_key,
                                      max_retries=0) as client:
            return await asyncio.gather(*[
                client.chat.completions.create(model=m, messages=user("hi"), max_tokens=4)
                for m in ("acme-doomed", "acme-support", "acme-base") * 2], return_exceptions=True)

    results = asyncio.run(mixed())
    for model, result in zip(("acme-doomed", "acme-support", "acme-base") * 2, results):
        if model == "acme-doomed":
            assert isinstance(result, openai.NotFoundError) and result.param == "model"
        else:
            assert result.usage.completion_tokens >= 1, result


def metric(server, name: str, **labels) -> float:
    text = httpx.get(server.url + "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    selector = re.escape(f"{{{wanted}}}") if labels else ""
    match = re.search(rf"^{name}{selector} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_client_disconnect_mid_stream_aborts_the_request(server, keys):
    before = metric(server, "lorag_chat_aborted_total", brand="acme-support", tenant="acme")
    body = {"model": "acme-support", "messages": user("Tell me everything."), "stream": True,
            "max_tokens": 800, "temperature": 1.0}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", server.url + "/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {keys['acme']}"}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
    wait_until(lambda: metric(server, "lorag_chat_aborted_total", brand="acme-support",
                              tenant="acme") > before, "the disconnect was not noticed")
    wait_until(lambda: metric(server, "lorag_engine_requests_running") == 0,  # the engine too
               "the engine request was not aborted")


# -- operations ---------------------------------------------------------------------------

def test_metrics_after_traffic(server, oai):
    oai.chat.completions.create(model="acme-support", messages=user("hours?"), max_tokens=3)
    text = httpx.get(server.url + "/metrics").text
    labels = dict(brand="acme-support", tenant="acme")
    assert metric(server, "lorag_http_requests_total", method="POST", route="/v1/chat/completions",
                  status="200", **labels) >= 1
    assert metric(server, "lorag_chat_tokens_total", kind="prompt", **labels) > 0
    assert metric(server, "lorag_chat_tokens_total", kind="completion", **labels) > 0
    assert metric(server, "lorag_chat_time_to_first_token_seconds_count", **labels) >= 1
    assert metric(server, "lorag_retrieval_duration_seconds_count", route="chat", tenant="acme") >= 1
    assert metric(server, "lorag_ingest_documents_submitted_total", tenant="globex") == 2
    assert metric(server, "lorag_jobs", kind="ingest", status="succeeded") >= 2
    assert 'route="/v1/chat/completions",status="404",tenant="globex"' in text
    assert metric(server, "lorag_engine_adapters_loaded") >= 1  # residency
    assert metric(server, "lorag_engine_adapter_loads_total") >= 2
    assert 'lorag_http_request_duration_seconds_bucket{brand="acme-support"' in text


def test_health_ready_and_docs(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").json() == {"status": "ready"}
    document = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/chat/completions" in document["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_admin_brands_adapters_and_keys(admin, server, keys, tiny_lora_factory):
    brand = ok(admin.patch("/admin/tenants/acme/brands/acme-base",
                           json={"retrieval": {"top_k": 2}, "system_prompt": "Be brief."}))
    assert brand["retrieval"]["top_k"] == 2 and brand["system_prompt"] == "Be brief."
    assert brand["adapter"] is None  # untouched: only the fields given change
    assert_error(admin.patch("/admin/tenants/acme/brands/acme-base", json={"adapter": "nope"}),
                 404, "adapter")
    assert_error(admin.post("/admin/tenants/acme/brands", json={"name": "acme-base"}), 409)
    assert_error(admin.post("/admin/tenants/acme/brands", json={"name": "Bad Name"}), 400, "name")
    assert_error(admin.get("/admin/tenants/globex/brands/acme-base"), 404)
    versions = ok(admin.get("/admin/tenants/acme/adapters/voice"))["data"]
    assert [v["version"] for v in versions] == [1]
    assert_error(admin.get("/admin/tenants/globex/adapters/voice"), 404, "name")
    assert_error(admin.post("/admin/tenants/acme/adapters/register",
                            json={"name": "x", "path": "/nonexistent"}), 403, "path")
    missing = tiny_lora_factory(seed=1).parent / "nonexistent"
    assert_error(admin.post("/admin/tenants/acme/adapters/register",
                            json={"name": "x", "path": str(missing)}), 404, "path")
    issued = ok(admin.post("/admin/tenants/acme/keys"), 201)
    models = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {issued['api_key']}"})
    assert models.status_code == 200
    ok(admin.delete(f"/admin/tenants/acme/keys/{issued['id']}"))
    models = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {issued['api_key']}"})
    assert_error(models, 401)
    assert_error(admin.post("/admin/tenants/acme/training", json={"name": "t", "steps": 0,
                                                                  "conversations": [[]]}), 400, "steps")
    assert_error(admin.post("/admin/tenants/nobody/training", json={"name": "t"}), 404, "tenant")


# -- the rest of OpenAI's API: structured outputs, tools, logprobs, n, completions, embeddings

class Verdict(BaseModel):
    """Fields whose JSON is short whatever the (random) tiny model prefers."""

    answer: Literal["yes", "no"]
    confident: bool
    score: int = Field(ge=0, le=9)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "London"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}


def test_parse_returns_a_pydantic_object_from_guided_decoding(oai):
    completion = oai.chat.completions.parse(
        model="acme-support", messages=user("Is the store open on holidays?"),
        response_format=Verdict, temperature=0, max_tokens=64)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict), completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model_extra["citations"]  # retrieval still applied


def test_async_parse_and_json_object(server, keys):
    async def main():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys["acme"],
                                      max_retries=0) as client:
            parsed = await client.chat.completions.parse(
                model="acme-base", messages=user("Do prices include tax?"),
                response_format=Verdict, temperature=0.8, seed=3, max_tokens=64)
            loose = await client.chat.completions.create(
                model="acme-base", messages=user("Reply in JSON."), max_tokens=24,
                response_format={"type": "json_object"})
            return parsed, loose

    parsed, loose = asyncio.run(main())
    assert isinstance(parsed.choices[0].message.parsed, Verdict)
    assert loose.choices[0].message.content.startswith("{")



def test_a_brands_default_schema_answers_a_request_without_response_format(admin, oai):
    schema = Verdict.model_json_schema()
    brand = ok(admin.patch("/admin/tenants/acme/brands/acme-base", json={"response_format": {
        "type": "json_schema", "json_schema": {"name": "verdict", "schema": schema,
                                               "strict": True}}}))
    try:
        assert brand["response_format"]["json_schema"]["schema"] == schema
        completion = oai.chat.completions.create(
            model="acme-base", messages=user("Is the store open on holidays?"), temperature=0,
            max_tokens=64)
        content = completion.choices[0].message.content
        assert Verdict.model_validate_json(content), content
        plain = oai.chat.completions.create(
            model="acme-base", messages=user("Is the store open on holidays?"), temperature=0,
            max_tokens=8, response_format={"type": "text"})
        assert plain.choices[0].message.content != content  # the default turned off
    finally:
        restored = ok(admin.patch("/admin/tenants/acme/brands/acme-base",
                                  json={"response_format": None}))
        assert restored["response_format"] is None


def test_a_schema_guided_decoding_cannot_use_is_400(acme):
    bad = {"type": "object", "properties": {"code": {"type": "string", "pattern": "[a-"}}}
    assert_error(acme.post("/v1/chat/completions", json={
        "model": "acme-base", "messages": user("hi"), "response_format": {
            "type": "json_schema", "json_schema": {"name": "bad", "schema": bad}}}),
        400, param="response_format")


def test_a_forced_tool_call_comes_back_as_tool_calls_and_its_result_is_answered(oai):
    question = user("What is the weather in Paris, and when does the store open?")
    first = oai.chat.completions.create(model="acme-support", messages=question,
                                        tools=[WEATHER], tool_choice="required", max_tokens=64)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert arguments["city"] in ("Paris", "London") and arguments["unit"] in ("celsius", "fahrenheit")
    assert first.model_extra["citations"]  # retrieval still applied
    follow_up = question + [choice.message.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": "21 degrees, sunny"}]
    second = oai.chat.completions.create(model="acme-support", messages=follow_up, tools=[WEATHER],
                                         max_tokens=12, temperature=0)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the call and result are in it


def test_tool_calls_stream_as_deltas(oai):
    named = {"type": "function", "function": {"name": "get_weather"}}
    kwargs = dict(model="acme-support", messages=user("Weather in London?"), tools=[WEATHER],
                  tool_choice=named, max_tokens=64, temperature=0)
    whole = oai.chat.completions.create(**kwargs).choices[0].message.tool_calls[0]
    chunks = list(oai.chat.completions.create(**kwargs, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and len(deltas) > 2
    assert "".join(d.function.arguments or "" for d in deltas) == whole.function.arguments
    with oai.chat.completions.stream(**{**kwargs, "tool_choice": "required"}) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert final.choices[0].finish_reason == "tool_calls"


def test_logprobs_are_the_sampled_tokens_with_their_alternatives(oai):
    response = oai.chat.completions.create(
        model="acme-support", messages=user("Hello"), max_tokens=8, temperature=0,
        logprobs=True, top_logprobs=3)
    content = response.choices[0].logprobs.content
    assert len(content) == response.usage.completion_tokens
    for token in content:
        alternatives = [t.logprob for t in token.top_logprobs]
        assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
        assert token.logprob == pytest.approx(alternatives[0])  # greedy: the most likely one
        assert token.top_logprobs[0].token == token.token
    stream = list(oai.chat.completions.create(
        model="acme-support", messages=user("Hello"), max_tokens=8, temperature=0,
        logprobs=True, stream=True))
    streamed = [t.token for c in stream if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    assert streamed == [t.token for t in content]


def test_n_answers_and_sampling_controls(oai, tokenizer):
    kwargs = dict(model="acme-base", messages=user("Tell me a story."), max_tokens=12,
                  temperature=1.0, seed=7, n=2)
    both = oai.chat.completions.create(**kwargs)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].message.content != both.choices[1].message.content
    stream = list(oai.chat.completions.create(**kwargs, stream=True))
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in stream
                       if c.choices and c.choices[0].index == index)
        assert text == both.choices[index].message.content
    token = tokenizer.encode(" the", add_special_tokens=False)[0]
    biased = oai.chat.completions.create(
        model="acme-base", messages=user("Hi"), max_tokens=4, temperature=0,
        logit_bias={str(token): 100}, presence_penalty=0.5, frequency_penalty=0.5)
    assert biased.choices[0].message.content == " the" * 4


def test_completions_raw_prompt_with_the_brands_adapter(oai, tokenizer):
    kwargs = dict(prompt="The store opens at", max_tokens=8, temperature=0)
    base = oai.completions.create(model="acme-base", **kwargs)
    tuned = oai.completions.create(model="acme-support", **kwargs)
    assert base.object == "text_completion" and base.choices[0].text != tuned.choices[0].text
    assert base.usage.prompt_tokens == len(tokenizer.encode(kwargs["prompt"], add_special_tokens=False))
    assert base.model_extra["citations"] == []  # retrieval is off unless asked
    streamed = "".join(c.choices[0].text for c in oai.completions.create(model="acme-base", stream=True,
                                                                         **kwargs) if c.choices)
    assert streamed == base.choices[0].text
    grounded = oai.completions.create(model="acme-base", **kwargs, logprobs=2, echo=True,
                                      extra_body={"retrieval": {"mode": "lexical"}})
    assert grounded.model_extra["citations"][0]["document_id"] == "hours"
    assert grounded.choices[0].text.startswith(kwargs["prompt"])
    assert len(grounded.choices[0].logprobs.tokens) == grounded.usage.completion_tokens


def test_embeddings_are_lorags_embedder_float_and_base64(server, keys):
    from retrieval.embedders import get_embedder
    from retrieval.settings import EmbedderSettings

    texts = ["The store opens at nine.", "Rockets burn kerosene."]
    expected = get_embedder(EmbedderSettings()).embed_documents(texts)

    async def main():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys["acme"],
                                      max_retries=0) as client:
            return await client.embeddings.create(model="acme-support", input=texts)  # base64

    sync = openai.OpenAI(base_url=server.url + "/v1", api_key=keys["acme"], max_retries=0)
    floats = sync.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
    encoded = asyncio.run(main())
    assert floats.model == "all-MiniLM-L6-v2" and floats.usage.prompt_tokens > 0
    for response in (floats, encoded):
        got = np.array([d.embedding for d in sorted(response.data, key=lambda d: d.index)])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-3)
    with pytest.raises(openai.NotFoundError):
        sync.embeddings.create(model="text-embedding-3-small", input="hi")
