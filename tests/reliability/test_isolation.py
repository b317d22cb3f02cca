"""Tenant isolation, property-based: hypothesis draws worlds of tenants (random ids),
documents (ids shared between tenants on purpose, texts from one shared vocabulary
plus a secret word per tenant), brands and adapters (names shared between tenants,
each backed by its own tenant's adapter), keys (valid, revoked, garbage) and queries,
and every route is called with every tenant's key:

- nothing of another tenant ever comes back: documents, chunks (by id and by secret
  word), citations, brands (models), adapters (the engine is only ever handed the
  caller's own adapter files), jobs;
- asking for another tenant's document, brand or job by name is a 404 whose body is
  byte for byte the body for a name that exists nowhere (existence is not revealed),
  and deleting another tenant's document changes nothing;
- revoked and garbage keys get 401 on every route;
- stored answers, their messages and feedback, the rollout readout and the audit log
  show a tenant only its own; another tenant's stored answer is a 404 like a missing one
  on every stored-completion and feedback route;
- OpenAI's files, vector stores and stored responses: each tenant's own file (with its
  secret word), store and response; lists and searches show only the tenant's own, and
  another tenant's file, store or response id is a 404 like a missing one on every route
  that takes it.

The app runs in-process over the real container (inprocess.py) with a recording fake
engine: what is generated does not matter here, what reaches the engine does.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.reliability import inprocess
from tests.reliability.harness import write_figures
from tests.reliability.inprocess import ADMIN, bearer

VOCAB = ["store", "hours", "rocket", "launch", "warranty", "price", "blue", "red", "fuel",
         "returns", "shipping", "reset", "device", "model", "nine", "six", "tuesday"]
DOC_IDS = st.text(alphabet="abcxyz019-_. /:üé", min_size=1, max_size=12).filter(
    lambda s: s.strip() and s not in (".", "..") and s == s.strip())
NAMES = st.sampled_from(["support", "sales", "bot", "help-desk", "x_1"])
ADAPTER_NAMES = st.sampled_from(["voice", "tone", None])
TENANT_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,6}", fullmatch=True)

_counter = itertools.count()


@st.composite
def worlds(draw):
    tenants = []
    for i in range(draw(st.integers(2, 4))):
        documents = draw(st.dictionaries(DOC_IDS, st.lists(st.sampled_from(VOCAB), min_size=1,
                                                           max_size=12), max_size=5))
        brands = draw(st.dictionaries(NAMES, ADAPTER_NAMES, max_size=3))
        tenants.append({"id": f"{draw(TENANT_IDS)}-{next(_counter)}", "documents": documents,
                        "brands": brands, "lora": draw(st.integers(0, 1))})
    queries = draw(st.lists(st.lists(st.sampled_from(VOCAB + ["secret0", "secret1", "secret2"]),
                                     min_size=1, max_size=4).map(" ".join), min_size=1, max_size=3))
    garbage = draw(st.text(alphabet="lrg-abcXYZ019_", min_size=1, max_size=60))
    return tenants, queries, garbage


class World:
    """A drawn world, created through the admin and tenant APIs."""

    def __init__(self, client, loras, spec):
        self.client = client
        self.tenants, self.queries, self.garbage = spec
        self.keys, self.jobs, self.revoked, self.answers = {}, {}, [], {}
        for n, tenant in enumerate(self.tenants):
            tenant["secret"] = f"secret{n}"
            self._create(tenant, loras[tenant["lora"]])

    def _create(self, tenant, lora):
        t = tenant["id"]
        created = ok(self.client.post("/admin/tenants", json={"id": t}, headers=ADMIN), 201)
        self.keys[t] = created["key"]["api_key"]
        revoked = ok(self.client.post(f"/admin/tenants/{t}/keys", headers=ADMIN), 201)
        ok(self.client.delete(f"/admin/tenants/{t}/keys/{revoked['id']}", headers=ADMIN))
        self.revoked.append(revoked["api_key"])
        for adapter in {a for a in tenant["brands"].values() if a}:
            ok(self.client.post(f"/admin/tenants/{t}/adapters/register", headers=ADMIN,
                                json={"name": adapter, "path": str(lora)}), 201)
        for brand, adapter in tenant["brands"].items():
            ok(self.client.post(f"/admin/tenants/{t}/brands", headers=ADMIN, json={
                "name": brand, "adapter": adapter, "system_prompt": f"You are {t}."}), 201)
        self.jobs[t] = []
        self.answers[t] = []
        if tenant["documents"]:
            documents = [{"id": i, "text": " ".join(words + [tenant["secret"]]),
                          "metadata": {"owner": t}} for i, words in tenant["documents"].items()]
            job = ok(self.client.post("/v1/documents", json={"documents": documents},
                                      headers=bearer(self.keys[t])), 202)
            self.jobs[t].append(job["id"])
            done = wait_job(self.client, self.keys[t], job["id"])
            assert done["status"] == "succeeded" and done["failed"] == 0, done

    def others(self, tenant, field):
        """Names of ``field`` (documents, brands) that other tenants have and ``tenant`` lacks."""
        own = set(tenant[field])
        return sorted({name for other in self.tenants if other is not tenant
                       for name in other[field]} - own)


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def wait_job(client, key, job_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = ok(client.get(f"/v1/jobs/{job_id}", headers=bearer(key)))
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.01)
    raise TimeoutError(job)


def _in_json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def same_as_missing(client, method, path_of, name, headers, kwargs=lambda n: {}):
    """The response for another tenant's ``name`` must equal the response for a name
    that exists nowhere (with that name written in the message)."""
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    theirs = client.request(method, path_of(name), headers=headers, **kwargs(name))
    nobody = client.request(method, path_of(missing), headers=headers, **kwargs(missing))
    assert theirs.status_code == nobody.status_code == 404, (theirs.text, nobody.text)
    expected = nobody.text.replace(_in_json(repr(missing)), _in_json(repr(name)))
    assert theirs.text == expected, (theirs.text, nobody.text)
    assert theirs.headers["content-type"] == nobody.headers["content-type"]


def check_tenant(world, app, tenant, figures):
    client, t = world.client, tenant["id"]
    headers = bearer(world.keys[t])
    own_docs = set(tenant["documents"])
    foreign_secrets = {o["secret"] for o in world.tenants if o is not tenant}
    count = 0

    def no_foreign(text):
        assert not any(s in text.split() for s in foreign_secrets), text

    # models (brands)
    models = ok(client.get("/v1/models", headers=headers))["data"]
    assert sorted(m["id"] for m in models) == sorted(tenant["brands"])
    assert all(m["owned_by"] == t for m in models)
    for name in world.others(tenant, "brands"):
        same_as_missing(client, "GET", lambda n: f"/v1/models/{n}", name, headers)
        same_as_missing(client, "POST", lambda n: "/v1/chat/completions", name, headers,
                        lambda n: {"json": {"model": n, "messages": [
                            {"role": "user", "content": "store hours"}]}})
        count += 2
    # chat as own brands: citations and the adapter handed to the engine
    for brand, adapter in tenant["brands"].items():
        for query in world.queries:
            body = {"model": brand, "messages": [{"role": "user", "content": query}],
                    "max_tokens": 4, "retrieval": {"mode": "hybrid", "top_k": 10},
                    "store": True, "metadata": {"owner": t}}
            answer = ok(client.post("/v1/chat/completions", json=body, headers=headers))
            world.answers[t].append(answer["id"])
            assert {c["document_id"] for c in answer["citations"]} <= own_docs
            request = app.engine.by_id[answer["id"]]
            no_foreign(request.prompt.replace(query, ""))  # the question is the caller's
            if adapter is None:
                assert request.adapter is None
            else:
                assert (request.adapter.tenant_id, request.adapter.name) == (t, adapter)
                assert request.adapter.path.is_relative_to(app.layout.adapters_dir / t)
            stream = client.post("/v1/chat/completions", json={**body, "stream": True},
                                 headers=headers)
            assert stream.status_code == 200
            first = json.loads(stream.text.split("\n\n")[0].removeprefix("data: "))
            assert {c["document_id"] for c in first["citations"]} <= own_docs
            world.answers[t].append(first["id"])
            count += 2
    # search: every mode, also restricted to other tenants' document ids
    other_ids = world.others(tenant, "documents")
    for query, mode in itertools.product(world.queries, ("dense", "lexical", "hybrid")):
        for document_ids in (None, other_ids or None):
            hits = ok(client.post("/v1/search", headers=headers, json={
                "query": query, "mode": mode, "top_k": 50, "document_ids": document_ids}))["data"]
            assert {h["document_id"] for h in hits} <= own_docs
            for hit in hits:
                no_foreign(hit["text"])
                assert hit["metadata"] == {"owner": t}
            if document_ids:
                assert hits == []
            count += 1
    # documents
    listed = ok(client.get("/v1/documents", headers=headers, params={"limit": 1000}))["data"]
    assert {d["id"] for d in listed} == own_docs
    for name in other_ids:
        for method in ("GET", "DELETE"):
            same_as_missing(client, method, lambda n: f"/v1/documents/{quote(n, safe='')}",
                            name, headers)
            count += 1
    for name in own_docs:
        assert ok(client.get(f"/v1/documents/{quote(name, safe='')}", headers=headers))["id"] == name
    # jobs
    jobs = ok(client.get("/v1/jobs", headers=headers))["data"]
    assert {j["id"] for j in jobs} == set(world.jobs[t])
    for other in world.tenants:
        for job_id in world.jobs[other["id"]] if other is not tenant else []:
            same_as_missing(client, "GET", lambda n: f"/v1/jobs/{n}", job_id, headers)
            same_as_missing(client, "GET", lambda n: f"/admin/tenants/{t}/jobs/{n}", job_id,
                            ADMIN)
            count += 2
    # admin views of one tenant never show another's brands or adapters
    for name in world.others(tenant, "brands"):
        same_as_missing(client, "GET", lambda n: f"/admin/tenants/{t}/brands/{n}", name, ADMIN)
        count += 1
    adapters = ok(client.get(f"/admin/tenants/{t}/adapters", headers=ADMIN))["data"]
    assert {a["name"] for a in adapters} == {a for a in tenant["brands"].values() if a}
    assert all(a["tenant"] == t for a in adapters)
    figures["requests"] += count


def check_stored(world, tenant, figures):
    """Stored answers, feedback, readout and audit records: the tenant's own only."""
    client, t = world.client, tenant["id"]
    headers = bearer(world.keys[t])
    own = set(world.answers[t])
    listed = ok(client.get("/v1/chat/completions", headers=headers, params={"limit": 100}))
    assert {d["id"] for d in listed["data"]} <= own and len(listed["data"]) == min(len(own), 100)
    for answer_id in sorted(own)[:1]:
        ok(client.post(f"/v1/chat/completions/{answer_id}/feedback", headers=headers,
                       json={"rating": -1}), 201)
    for other in world.tenants:
        if other is tenant:
            continue
        for answer_id in world.answers[other["id"]][:2]:
            for method, suffix, kwargs in (("GET", "", {}), ("GET", "/messages", {}),
                                           ("DELETE", "", {}), ("GET", "/feedback", {}),
                                           ("POST", "/feedback", {"json": {"rating": 1}})):
                same_as_missing(client, method, lambda n: f"/v1/chat/completions/{n}{suffix}",
                                answer_id, headers, lambda n: kwargs)
                figures["requests"] += 1
        for name in world.others(tenant, "brands"):
            same_as_missing(client, "GET", lambda n: f"/v1/rollouts/{n}", name, headers)
            figures["requests"] += 1
    for brand in tenant["brands"]:
        readout = ok(client.get(f"/v1/rollouts/{brand}", headers=headers))
        assert sum(row["requests"] for row in readout["targets"]) == 2 * len(world.queries)
    records = ok(client.get("/v1/audit", headers=headers, params={"limit": 1000}))["data"]
    assert records and all(r["tenant"] == t for r in records)


def make_openai_resources(world, tenant):
    """A file with the tenant's secret word in a vector store, and (given a brand) a stored
    response answered from it, through OpenAI's routes."""
    client, t = world.client, tenant["id"]
    headers = bearer(world.keys[t])
    text = f"{tenant['secret']} warranty store hours of {t}".encode()
    file = ok(client.post("/v1/files", headers=headers, data={"purpose": "assistants"},
                          files={"file": (f"{t}.txt", text, "text/plain")}))
    store = ok(client.post("/v1/vector_stores", headers=headers, json={"name": t}))
    ok(client.post(f"/v1/vector_stores/{store['id']}/files", headers=headers,
                   json={"file_id": file["id"]}))
    deadline = time.monotonic() + 60
    while (attached := ok(client.get(f"/v1/vector_stores/{store['id']}/files/{file['id']}",
                                     headers=headers)))["status"] == "in_progress":
        assert time.monotonic() < deadline, attached
        time.sleep(0.01)
    assert attached["status"] == "completed", attached
    tenant["openai"] = {"files": [file["id"]], "vector_stores": [store["id"]], "responses": []}
    for brand in list(tenant["brands"])[:1]:
        response = ok(client.post("/v1/responses", headers=headers, json={
            "model": brand, "input": "warranty", "max_output_tokens": 4,
            "tools": [{"type": "file_search", "vector_store_ids": [store["id"]]}]}))
        tenant["openai"]["responses"].append(response["id"])


def check_openai_resources(world, tenant, figures):
    client, t = world.client, tenant["id"]
    headers = bearer(world.keys[t])
    own = tenant["openai"]
    foreign_secrets = {o["secret"] for o in world.tenants if o is not tenant}
    files = ok(client.get("/v1/files", headers=headers, params={"limit": 100}))["data"]
    assert {f["id"] for f in files} == set(own["files"])
    stores = ok(client.get("/v1/vector_stores", headers=headers, params={"limit": 100}))["data"]
    assert {s["id"] for s in stores} == set(own["vector_stores"])
    for store_id in own["vector_stores"]:
        for query in world.queries:
            hits = ok(client.post(f"/v1/vector_stores/{store_id}/search", headers=headers,
                                  json={"query": query, "max_num_results": 50}))["data"]
            assert {h["file_id"] for h in hits} <= set(own["files"])
            text = " ".join(c["text"] for h in hits for c in h["content"])
            assert not any(s in text.split() for s in foreign_secrets), text
            figures["requests"] += 1
    for other in world.tenants:
        if other is tenant:
            continue
        theirs = other["openai"]
        for file_id in theirs["files"]:
            for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
                same_as_missing(client, method, lambda n: f"/v1/files/{n}{suffix}", file_id,
                                headers)
                figures["requests"] += 1
        for store_id in theirs["vector_stores"]:
            for method, suffix, kwargs in (("GET", "", {}), ("DELETE", "", {}),
                                           ("GET", "/files", {}),
                                           ("POST", "/search", {"json": {"query": "warranty"}}),
                                           ("POST", "/files", {"json": {"file_id": own["files"][0]}})):
                same_as_missing(client, method, lambda n: f"/v1/vector_stores/{n}{suffix}",
                                store_id, headers, lambda n: kwargs)
                figures["requests"] += 1
        for response_id in theirs["responses"]:
            for method in ("GET", "DELETE"):
                same_as_missing(client, method, lambda n: f"/v1/responses/{n}", response_id,
                                headers)
                figures["requests"] += 1


def check_keys(world, figures):
    routes = [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/v1/models/x"),
              ("POST", "/v1/search"), ("POST", "/v1/documents"), ("GET", "/v1/documents"),
              ("GET", "/v1/documents/x"), ("DELETE", "/v1/documents/x"), ("GET", "/v1/jobs"),
              ("GET", "/v1/jobs/x"), ("GET", "/v1/chat/completions"),
              ("GET", "/v1/chat/completions/x"), ("DELETE", "/v1/chat/completions/x"),
              ("GET", "/v1/chat/completions/x/messages"),
              ("POST", "/v1/chat/completions/x/feedback"), ("GET", "/v1/rollouts/x"),
              ("GET", "/v1/audit"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
              ("POST", "/v1/files"), ("GET", "/v1/files"), ("GET", "/v1/files/x"),
              ("GET", "/v1/vector_stores"), ("POST", "/v1/vector_stores"),
              ("POST", "/v1/vector_stores/x/search"), ("POST", "/v1/responses"),
              ("GET", "/v1/responses/x"), ("GET", "/v1/fine_tuning/jobs"),
              ("POST", "/v1/fine_tuning/jobs")]
    for key in [*world.revoked, world.garbage, world.keys[world.tenants[0]["id"]] + "x"]:
        for method, path in routes:
            response = world.client.request(method, path, headers=bearer(key), json={})
            assert response.status_code == 401, (key, path, response.text)
            figures["requests"] += 1


def run_isolation(tmp_path, tiny_model, loras, examples: int) -> dict:
    app = inprocess.container(tmp_path / "data", tiny_model)
    app.settings.adapters.import_roots = sorted({lora.parent for lora in loras})
    figures = {"examples": 0, "tenants": 0, "requests": 0}
    with inprocess.client(app) as client:

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(worlds())
        def isolated(spec):
            world = World(client, loras, spec)
            for tenant in world.tenants:
                check_tenant(world, app, tenant, figures)
            for tenant in world.tenants:
                check_stored(world, tenant, figures)
            for tenant in world.tenants:
                make_openai_resources(world, tenant)
            for tenant in world.tenants:
                check_openai_resources(world, tenant, figures)
            check_keys(world, figures)
            # deleting another tenant's documents above changed nothing
            for tenant in world.tenants:
                listed = ok(client.get("/v1/documents", params={"limit": 1000},
                                       headers=bearer(world.keys[tenant["id"]])))["data"]
                stored = {f"vector_store/{s}/{f}" for s in tenant["openai"]["vector_stores"]
                          for f in tenant["openai"]["files"]}  # a store's file is a document
                assert {d["id"] for d in listed} == set(tenant["documents"]) | stored
            figures["examples"] += 1
            figures["tenants"] += len(world.tenants)

        isolated()
    app.close()
    return figures


def test_tenants_are_isolated_on_every_route(tmp_path, tiny_model, loras):
    figures = run_isolation(tmp_path, tiny_model, loras, examples=12)
    write_figures("isolation_short", figures)


@pytest.mark.reliability
def test_tenants_are_isolated_on_every_route_long(tmp_path, tiny_model, loras):
    figures = run_isolation(tmp_path, tiny_model, loras, examples=300)
    write_figures("isolation_long", figures)
