"""OpenAI's Files, Vector Stores, Responses (file_search) and fine-tuning APIs, driven by
the official ``openai`` client (sync, async, streaming) against one real ``lorag serve``
on the tiny model: two tenants, so every id of one is a 404 for the other."""

from __future__ import annotations

import asyncio
import io
import json
import time

import httpx
import openai
import pytest

from lorag.testing.server import LoragProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARRANTY = ("The Zephyr kettle warranty lasts three years from purchase and covers the "
            "heating element and the thermostat. Limescale damage is not covered.")
SHIPPING = ("Zephyr parcels leave the warehouse within two days. Express delivery costs "
            "nine euros and arrives the next morning.")
SYSTEM = "You are the Zephyr help desk."


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    data = tmp_path_factory.mktemp("oai-stores") / "data"
    env = {"LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__MAX_MODEL_LEN": "1024",
           "LORAG_ENGINE__KV_CACHE_BYTES": str(128 * 2**20), "LORAG_ENVIRONMENT": "test",
           "LORAG_SERVER__MAX_BODY_BYTES": str(2 * 2**20)}
    with LoragProcess(data, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=60) as admin:
        keys = {}
        for tenant in ("zephyr", "other"):
            created = admin.post("/admin/tenants", json={"id": tenant})
            assert created.status_code == 201, created.text
            keys[tenant] = created.json()["key"]["api_key"]
            brand = admin.post(f"/admin/tenants/{tenant}/brands", json={
                "name": "desk", "adapter": None, "system_prompt": SYSTEM})
            assert brand.status_code == 201, brand.text
    return keys


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def zephyr(server, keys) -> openai.OpenAI:
    return client(server, keys["zephyr"])


@pytest.fixture(scope="module")
def other(server, keys) -> openai.OpenAI:
    return client(server, keys["other"])


@pytest.fixture(scope="module")
def store(zephyr) -> dict:
    """A vector store with two files attached through upload_and_poll, one with attributes."""
    vector_store = zephyr.vector_stores.create(name="help desk", metadata={"team": "support"})
    warranty = zephyr.vector_stores.files.upload_and_poll(
        vector_store_id=vector_store.id, file=("warranty.md", WARRANTY.encode()),
        attributes={"topic": "warranty", "year": 2026})
    shipping = zephyr.files.create(file=("shipping.txt", SHIPPING.encode()), purpose="assistants")
    attached = zephyr.vector_stores.files.create_and_poll(
        vector_store_id=vector_store.id, file_id=shipping.id, attributes={"topic": "shipping"})
    assert warranty.status == "completed", warranty
    assert attached.status == "completed", attached
    return {"id": vector_store.id, "warranty": warranty.id, "shipping": shipping.id}


# -- files ------------------------------------------------------------------------------

def test_files_upload_list_retrieve_content_delete(zephyr):
    created = zephyr.files.create(file=("notes.txt", b"hello files"), purpose="user_data")
    assert created.object == "file" and created.bytes == 11 and created.filename == "notes.txt"
    assert zephyr.files.retrieve(created.id).purpose == "user_data"
    assert created.id in [f.id for f in zephyr.files.list(purpose="user_data")]
    assert zephyr.files.content(created.id).read() == b"hello files"
    assert zephyr.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError) as missing:
        zephyr.files.retrieve(created.id)
    assert missing.value.body["param"] == "file_id"


def test_files_refuse_bad_purpose_and_extra_fields(server, keys, zephyr):
    with pytest.raises(openai.BadRequestError) as bad:
        zephyr.files.create(file=("a.jsonl", b"{}"), purpose="batch")
    assert bad.value.body["param"] == "purpose"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['zephyr']}"}) as http:
        response = http.post("/v1/files", data={"purpose": "assistants", "expires_after[anchor]":
                                                "created_at"}, files={"file": ("a.txt", b"x")})
    assert response.status_code == 400 and response.json()["error"]["param"] == "expires_after[anchor]"


def test_files_list_pages_with_after(zephyr):
    ids = [zephyr.files.create(file=(f"p{i}.txt", b"page"), purpose="user_data").id
           for i in range(3)]
    first = zephyr.files.list(purpose="user_data", limit=2, order="asc")
    assert first.has_more
    second = zephyr.files.list(purpose="user_data", limit=2, order="asc", after=first.data[-1].id)
    seen = [f.id for f in first.data] + [f.id for f in second.data]
    assert [i for i in seen if i in ids] == ids
    for file_id in ids:
        zephyr.files.delete(file_id)


# -- vector stores ------------------------------------------------------------------------

def test_vector_store_counts_and_search_finds_the_uploaded_text(zephyr, store):
    retrieved = zephyr.vector_stores.retrieve(store["id"])
    assert retrieved.status == "completed" and retrieved.metadata == {"team": "support"}
    assert retrieved.file_counts.completed == 2 and retrieved.file_counts.total == 2
    assert retrieved.usage_bytes == len(WARRANTY) + len(SHIPPING)
    page = zephyr.vector_stores.search(store["id"], query="how long is the kettle warranty")
    assert page.data[0].file_id == store["warranty"] and page.data[0].filename == "warranty.md"
    assert "three years" in page.data[0].content[0].text
    assert page.data[0].attributes == {"topic": "warranty", "year": 2026}
    assert page.search_query == ["how long is the kettle warranty"]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"type": "eq", "key": "topic", "value": "shipping"}, {"shipping"}),
    ({"type": "ne", "key": "topic", "value": "shipping"}, {"warranty"}),
    ({"type": "gte", "key": "year", "value": 2026}, {"warranty"}),
    ({"type": "lt", "key": "year", "value": 2026}, set()),
    ({"type": "in", "key": "topic", "value": ["shipping", "returns"]}, {"shipping"}),
    ({"type": "nin", "key": "topic", "value": ["shipping"]}, {"warranty"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "topic", "value": "shipping"},
                                {"type": "eq", "key": "year", "value": 2026}]},
     {"shipping", "warranty"}),
    ({"type": "and", "filters": [{"type": "eq", "key": "topic", "value": "shipping"},
                                 {"type": "eq", "key": "year", "value": 2026}]}, set()),
])
def test_vector_store_search_filters(zephyr, store, filters, expected):
    page = zephyr.vector_stores.search(store["id"], query="Zephyr kettle parcels warranty",
                                       filters=filters)
    names = {"warranty.md": "warranty", "shipping.txt": "shipping"}
    assert {names[r.filename] for r in page.data} == expected


def test_vector_store_search_refuses_bad_filters_and_rewrite(zephyr, store):
    with pytest.raises(openai.BadRequestError) as bad:
        zephyr.vector_stores.search(store["id"], query="x", filters={
            "type": "and", "filters": [{"type": "gt", "key": "topic", "value": "a"}]})
    assert bad.value.body["param"] == "filters.filters[0].value"
    with pytest.raises(openai.BadRequestError) as bad:
        zephyr.vector_stores.search(store["id"], query="x", rewrite_query=True)
    assert bad.value.body["param"] == "rewrite_query"


def test_vector_store_files_list_content_and_failure(zephyr, store):
    files = zephyr.vector_stores.files.list(store["id"], filter="completed")
    assert {f.id for f in files.data} == {store["warranty"], store["shipping"]}
    content = zephyr.vector_stores.files.content(file_id=store["shipping"],
                                                 vector_store_id=store["id"])
    assert "nine euros" in "".join(part.text for part in content)
    broken = zephyr.vector_stores.create(name="broken")
    failed = zephyr.vector_stores.files.upload_and_poll(vector_store_id=broken.id,
                                                       file=("data.bin", b"\x00\x01"))
    assert failed.status == "failed" and failed.last_error.code == "unsupported_file"
    assert zephyr.vector_stores.retrieve(broken.id).file_counts.failed == 1
    assert zephyr.vector_stores.delete(broken.id).deleted is True


def test_detach_and_delete_remove_the_text_from_search(zephyr):
    vector_store = zephyr.vector_stores.create(name="temporary")
    uploaded = zephyr.vector_stores.files.upload_and_poll(
        vector_store_id=vector_store.id, file=("quartz.txt", b"Quartz clocks hum at night."))
    assert zephyr.vector_stores.search(vector_store.id, query="quartz clocks").data
    zephyr.vector_stores.files.delete(file_id=uploaded.id, vector_store_id=vector_store.id)
    assert not zephyr.vector_stores.search(vector_store.id, query="quartz clocks").data
    assert zephyr.files.retrieve(uploaded.id).id == uploaded.id  # the file stays
    zephyr.files.delete(uploaded.id)
    zephyr.vector_stores.delete(vector_store.id)
    with pytest.raises(openai.NotFoundError):
        zephyr.vector_stores.retrieve(vector_store.id)


def test_async_client_searches(server, keys, store):
    async def search() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys["zephyr"],
                                      max_retries=0) as client:
            page = await client.vector_stores.search(store["id"], query="express delivery")
            return [r.file_id for r in page.data]

    assert asyncio.run(search())[0] == store["shipping"]


def test_tenants_never_see_each_others_files_and_stores(other, store):
    for call in (lambda: other.files.retrieve(store["warranty"]),
                 lambda: other.files.content(store["warranty"]),
                 lambda: other.files.delete(store["warranty"]),
                 lambda: other.vector_stores.retrieve(store["id"]),
                 lambda: other.vector_stores.search(store["id"], query="warranty"),
                 lambda: other.vector_stores.files.list(store["id"]),
                 lambda: other.vector_stores.files.retrieve(file_id=store["warranty"],
                                                            vector_store_id=store["id"]),
                 lambda: other.vector_stores.delete(store["id"])):
        with pytest.raises(openai.NotFoundError):
            call()
    own = other.vector_stores.create(name="mine")
    with pytest.raises(openai.NotFoundError) as attach:
        other.vector_stores.files.create(vector_store_id=own.id, file_id=store["warranty"])
    assert attach.value.body["param"] == "file_id"
    assert store["id"] not in [s.id for s in other.vector_stores.list()]
    assert store["warranty"] not in [f.id for f in other.files.list()]
