"""Answer quality end to end over HTTP: a real ``lorag serve`` (the tiny model on the PEFT
engine, the packaged all-MiniLM embedder, SQLite/FAISS), called with httpx and the
official ``openai`` client.

- PII canaries: documents carrying unique canary values (an email, a phone number, a
  credit card, an IBAN, a deny-listed term) are ingested with ``ingest.pii`` = redact
  for the tenant; none of them is stored (no byte of any file under the data folder),
  searchable (lexical, dense, hybrid), embedded (each stored vector is the embedding of
  the redacted chunk text), or returned in an answer (streamed or not), and the job
  record counts them by type.
- The grounding guard: ``flag`` adds the verdict to the response and to the last stream
  event; ``abstain`` replaces an ungrounded answer with the brand's fallback; both are
  in the Prometheus histogram per brand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from lorag.core.layout import Layout
from lorag.testing.server import LoragProcess
from retrieval.embedders import get_embedder
from retrieval.settings import EmbedderSettings
from retrieval.store import ChunkStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANARIES = {
    "EMAIL_ADDRESS": "canary.k7q2x@example.org",
    "PHONE_NUMBER": "+1 415-555-0188",
    "CREDIT_CARD": "4539 1488 0343 6467",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "DENY_LIST": "Project Nightjar",
}
# how each canary could also appear once normalised (digits only, no spaces)
VARIANTS = [v for c in CANARIES.values() for v in {c, c.replace(" ", ""), c.replace("-", "")}] + \
    ["4539148803436467", "4155550188", "k7q2x", "Nightjar"]
DOCS = [
    {"id": "support", "title": "Contact", "text":
        "Write to canary.k7q2x@example.org for help with the BrewMate kettle. Our support "
        "line is +1 415-555-0188 and answers on weekdays."},
    {"id": "billing", "title": "Billing", "text":
        "The test card 4539 1488 0343 6467 was charged for the MowBot order. Refunds go to "
        "the account GB82 WEST 1234 5698 7654 32 within five days."},
    {"id": "roadmap", "title": "Roadmap", "text":
        "Project Nightjar is the code name of the next robot vacuum. The Sweepy X2 vacuum "
        "empties its own bin and maps every room of the house."},
]
FALLBACK = "Sorry, I cannot answer that from the documents."


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    data = tmp_path_factory.mktemp("quality") / "data"
    env = {"LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__BACKEND": "peft",
           "LORAG_ENGINE__MAX_MODEL_LEN": "1024", "LORAG_ENVIRONMENT": "test",
           "LORAG_INGEST__PII__TENANTS": json.dumps({"acme": "redact"}),
           "LORAG_INGEST__PII__DENY_LISTS": json.dumps({"acme": ["Project Nightjar"]})}
    with LoragProcess(data, env=env) as process:
        yield process


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def setup(server) -> dict:
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60) as admin:
        key = ok(admin.post("/admin/tenants", json={"id": "acme"}), 201)["key"]["api_key"]
        brands = {"plain": None,
                  "flagged": {"grounding": "flag", "threshold": 0.5, "redact_output": True},
                  "careful": {"grounding": "abstain", "threshold": 1.0, "fallback": FALLBACK}}
        for name, quality in brands.items():
            ok(admin.post("/admin/tenants/acme/brands", json={"name": name, "quality": quality}), 201)
    client = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
    job = ok(client.post("/v1/documents", json={"documents": DOCS}), 202)
    deadline = time.monotonic() + 120
    while (found := ok(client.get(f"/v1/jobs/{job['id']}")))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    yield {"key": key, "client": client, "job": found}
    client.close()


@pytest.fixture(scope="module")
def oai(server, setup) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=setup["key"], max_retries=0)


def assert_no_canary(text: str) -> None:
    for value in VARIANTS:
        assert value.lower() not in text.lower(), value


def test_the_job_record_counts_pii_by_type(setup):
    job = setup["job"]
    assert job["status"] == "succeeded" and job["completed"] == len(DOCS), job
    assert job["result"]["pii"] == {entity: 1 for entity in CANARIES}, job["result"]


def test_no_canary_is_stored_in_any_file(server, setup):
    files = [p for p in Path(server.data_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" or "store" in p.name for p in files), files
    for path in files:
        data = path.read_bytes()
        for value in VARIANTS:
            assert value.encode() not in data, (value, path)
            assert value.encode("utf-16-le") not in data, (value, path)


def test_the_stored_text_has_typed_placeholders(setup):
    texts = "\n".join(hit["text"] for hit in ok(setup["client"].post(
        "/v1/search", json={"query": "support billing roadmap", "top_k": 10}))["data"])
    for placeholder in ("<EMAIL_ADDRESS>", "<PHONE_NUMBER>", "<CREDIT_CARD>", "<IBAN_CODE>",
                        "<DENY_LIST>"):
        assert placeholder in texts
    assert "BrewMate kettle" in texts and "MowBot order" in texts  # the rest is intact


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_no_canary_is_searchable(setup, mode):
    for value in CANARIES.values():
        hits = ok(setup["client"].post("/v1/search", json={"query": value, "mode": mode,
                                                            "top_k": 10}))["data"]
        for hit in hits:
            assert_no_canary(hit["text"])


def test_each_stored_vector_embeds_the_redacted_text(server):
    store = ChunkStore(Layout(Path(server.data_dir)).tenant_store("acme"))
    try:
        embedder = get_embedder(EmbedderSettings())
        stored = store.all_vectors(embedder.dimension)
        hits = store.hits([(int(i), 0.0) for i in stored.ids])
    finally:
        store.close()
    assert len(hits) == len(stored.ids) >= len(DOCS)
    texts = [hit.text for hit in hits]
    for text in texts:
        assert_no_canary(text)
    cosines = np.sum(embedder.embed_documents(texts) * stored.vectors, axis=1)
    assert np.all(cosines > 0.99), cosines
    originals = [next(d["text"] for d in DOCS if d["id"] == hit.document_id) for hit in hits]
    assert np.all(np.sum(embedder.embed_documents(originals) * stored.vectors, axis=1) < 0.99)


@pytest.mark.parametrize("brand", ["plain", "flagged", "careful"])
def test_no_canary_in_any_answer(oai, brand):
    for question in ("What is the support email and phone?", "Which card and IBAN were used?",
                     "What is the code name of the next vacuum?"):
        answer = oai.chat.completions.create(model=brand, max_tokens=24, messages=[
            {"role": "user", "content": question}]).choices[0].message.content
        assert_no_canary(answer)
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           oai.chat.completions.create(model=brand, max_tokens=24, stream=True,
                                                       messages=[{"role": "user", "content": question}])
                           if chunk.choices)
        assert_no_canary(streamed)


def test_flag_reports_the_verdict_in_the_response_and_the_last_event(oai):
    messages = [{"role": "user", "content": "How does the Sweepy X2 empty its bin?"}]
    response = oai.chat.completions.create(model="flagged", max_tokens=24, messages=messages)
    grounding = response.model_extra["grounding"]
    assert grounding["mode"] == "flag" and grounding["threshold"] == 0.5
    assert grounding["abstained"] is False
    assert grounding["grounded"] == (grounding["groundedness"] is None
                                     or grounding["groundedness"] >= 0.5)
    assert len(grounding["unsupported"]) <= len(response.choices[0].message.content)
    for options in (None, {"include_usage": True}):
        events = list(oai.chat.completions.create(model="flagged", max_tokens=24, stream=True,
                                                  messages=messages, stream_options=options))
        carrying = [i for i, e in enumerate(events) if (e.model_extra or {}).get("grounding")]
        assert carrying == [len(events) - 1]
        assert events[-1].model_extra["grounding"]["mode"] == "flag"
    plain = oai.chat.completions.create(model="plain", max_tokens=8, messages=messages)
    assert plain.model_extra.get("grounding") is None


def test_abstain_replaces_an_ungrounded_answer(oai, server, setup):
    # the tiny model's random words are supported by no source: groundedness < 1.0
    response = oai.chat.completions.create(model="careful", max_tokens=24, messages=[
        {"role": "user", "content": "How does the Sweepy X2 empty its bin?"}])
    grounding = response.model_extra["grounding"]
    if grounding["groundedness"] is None:
        pytest.skip("the model answered with no sentence this time")
    assert grounding["grounded"] is False and grounding["abstained"] is True
    assert response.choices[0].message.content == FALLBACK
    assert grounding["unsupported"]
    metrics = httpx.get(server.url + "/metrics", headers=server.admin_headers).text
    assert 'lorag_chat_groundedness_count{brand="careful",tenant="acme"}' in metrics
    assert 'lorag_chat_grounding_actions_total{action="abstained",brand="careful",tenant="acme"}' in metrics


def test_bad_brand_quality_is_refused_with_the_field_named(server):
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60) as admin:
        response = admin.post("/admin/tenants/acme/brands", json={
            "name": "bad", "quality": {"grounding": "sometimes"}})
        assert response.status_code == 400, response.text
        assert "grounding" in response.json()["error"]["param"]
        response = admin.patch("/admin/tenants/acme/brands/plain", json={
            "quality": {"threshold": 2}})
        assert response.status_code == 400 and "threshold" in response.json()["error"]["param"]
