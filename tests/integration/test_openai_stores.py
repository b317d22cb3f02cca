"""OpenAI's Files, Vector Stores, Responses (file_search) and fine-tuning APIs, driven by
the official ``openai`` client (sync, async, streaming) against one real ``lorag serve``
on the tiny model: two tenants, so every id of one is a 404 for the other."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

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
    # a generous deadline: on a loaded 2-core machine the engine has taken 5 minutes to start
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


def test_new_attributes_are_read_again_and_filtered_on(zephyr):
    vector_store = zephyr.vector_stores.create(name="relabelled")
    uploaded = zephyr.vector_stores.files.upload_and_poll(
        vector_store_id=vector_store.id, file=("pump.txt", b"The garden pump needs oil yearly."),
        attributes={"season": "spring"})
    zephyr.vector_stores.files.update(file_id=uploaded.id, vector_store_id=vector_store.id,
                                      attributes={"season": "autumn"})
    done = zephyr.vector_stores.files.poll(uploaded.id, vector_store_id=vector_store.id)
    assert done.status == "completed" and done.attributes == {"season": "autumn"}

    def search(season: str) -> list[str]:
        return [r.file_id for r in zephyr.vector_stores.search(
            vector_store.id, query="garden pump oil",
            filters={"type": "eq", "key": "season", "value": season}).data]

    assert search("autumn") == [uploaded.id] and search("spring") == []
    zephyr.vector_stores.delete(vector_store.id)


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


# -- responses with file_search -------------------------------------------------------------

def file_search(store: dict, **extra) -> list[dict]:
    return [{"type": "file_search", "vector_store_ids": [store["id"]], **extra}]


def test_response_answers_with_file_citations(zephyr, store):
    response = zephyr.responses.create(
        model="desk", input="How long does the kettle warranty last?", tools=file_search(store),
        max_output_tokens=8, include=["file_search_call.results"])
    assert response.status in ("completed", "incomplete")
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    search = response.output[0]
    assert search.queries == ["How long does the kettle warranty last?"]
    assert any("three years" in r.text for r in search.results)
    part = response.output[1].content[0]
    assert response.output_text == part.text
    cited = {(a.type, a.file_id, a.filename) for a in part.annotations}
    assert ("file_citation", store["warranty"], "warranty.md") in cited
    assert response.usage.output_tokens >= 1
    # a filter on the store's attributes leaves the other file only
    shipping_only = zephyr.responses.create(
        model="desk", input="How long does the kettle warranty last? How fast is express?",
        tools=file_search(store, filters={"type": "eq", "key": "topic", "value": "shipping"}),
        max_output_tokens=4)
    assert {a.file_id for a in shipping_only.output[1].content[0].annotations} == {store["shipping"]}


def test_response_without_tools_searches_nothing(zephyr):
    response = zephyr.responses.create(model="desk", input="Hello", max_output_tokens=4,
                                       instructions="Answer briefly.", store=False)
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].content[0].annotations == []
    with pytest.raises(openai.NotFoundError):
        zephyr.responses.retrieve(response.id)


def test_response_streams_events_the_client_accumulates(zephyr, store):
    deltas, kinds = [], []
    with zephyr.responses.stream(model="desk", input="kettle warranty years?",
                                 tools=file_search(store), max_output_tokens=8) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.file_search_call.completed" in kinds
    assert kinds.index("response.file_search_call.completed") < kinds.index("response.output_text.delta")
    assert final.output_text == "".join(deltas) and deltas
    assert store["warranty"] in {a.file_id for a in final.output[1].content[0].annotations}
    created = zephyr.responses.create(model="desk", input="kettle warranty years?", stream=True,
                                      tools=file_search(store), max_output_tokens=4)
    events = list(created)
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert zephyr.responses.retrieve(events[-1].response.id).output_text == \
        events[-1].response.output_text


def test_previous_response_id_continues_the_conversation(server, keys, zephyr, other):
    first = zephyr.responses.create(model="desk", input="My name is Ada Lovelace.",
                                    max_output_tokens=4)
    alone = zephyr.responses.create(model="desk", input="What is my name?", max_output_tokens=4,
                                    store=False)
    follow = zephyr.responses.create(model="desk", input="What is my name?", max_output_tokens=4,
                                     previous_response_id=first.id)
    # the earlier turn (question and answer) is part of the prompt
    assert follow.usage.input_tokens > alone.usage.input_tokens
    assert follow.previous_response_id == first.id

    async def later() -> int:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=keys["zephyr"],
                                      max_retries=0) as client:
            answer = await client.responses.create(model="desk", input="And again?",
                                                   max_output_tokens=4,
                                                   previous_response_id=follow.id)
            return answer.usage.input_tokens

    assert asyncio.run(later()) > follow.usage.input_tokens
    with pytest.raises(openai.NotFoundError) as foreign:
        other.responses.create(model="desk", input="hi", previous_response_id=first.id)
    assert foreign.value.body["param"] == "previous_response_id"
    assert zephyr.responses.delete(first.id) is None
    with pytest.raises(openai.NotFoundError):
        zephyr.responses.retrieve(first.id)


def test_responses_refuse_what_they_do_not_support(zephyr, other, store):
    cases = [({"tools": [{"type": "web_search"}]}, "tools[0].type"),
             ({"tool_choice": "required"}, "tool_choice"),
             ({"text": {"format": {"type": "json_object"}}}, "text.format.type"),
             ({"truncation": "disabled"}, "truncation"),
             ({"reasoning": {"effort": "low"}}, "reasoning"),
             ({"tools": file_search(store, filters={"type": "gt", "key": "x", "value": "a"})},
              "tools[0].filters.value")]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as bad:
            zephyr.responses.create(model="desk", input="hi", **extra)
        assert bad.value.body["param"] == param, (extra, bad.value.body)
    with pytest.raises(openai.NotFoundError) as foreign:
        other.responses.create(model="desk", input="hi", tools=file_search(store))
    assert foreign.value.body["param"] == "tools[0].vector_store_ids[0]"


# -- fine-tuning ------------------------------------------------------------------------------

TRAINING = [{"messages": [{"role": "user", "content": f"What does the kettle say ({i})?"},
                          {"role": "assistant", "content": "Zephyr kettles whistle a tune."}]}
            for i in range(8)]


def base_model(server) -> str:
    """The id fine-tuning takes: the served base model's folder name (the tiny model's)."""
    return Path(server.env["LORAG_ENGINE__MODEL"]).name


def wait_job(client: openai.OpenAI, job_id: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while (job := client.fine_tuning.jobs.retrieve(job_id)).status in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job


def test_fine_tuning_trains_and_the_model_answers(server, keys, zephyr, other):
    lines = "\n".join(json.dumps(t) for t in TRAINING).encode()
    training = zephyr.files.create(file=("train.jsonl", io.BytesIO(lines)), purpose="fine-tune")
    job = zephyr.fine_tuning.jobs.create(
        model=base_model(server), training_file=training.id, suffix="whistle", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 4}}})
    assert job.status in ("queued", "running") and job.hyperparameters.n_epochs == 1
    queued = zephyr.fine_tuning.jobs.create(model=base_model(server), training_file=training.id,
                                            suffix="never")
    assert zephyr.fine_tuning.jobs.cancel(queued.id).status == "cancelled"
    done = wait_job(zephyr, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{base_model(server)}:zephyr:whistle:1"
    assert queued.id in [j.id for j in zephyr.fine_tuning.jobs.list()]
    messages = [e.message for e in zephyr.fine_tuning.jobs.list_events(job.id)]
    assert messages[0] == f"New fine-tuned model created: {done.fine_tuned_model}"
    assert messages[-1] == "Created fine-tuning job"
    checkpoint = zephyr.fine_tuning.jobs.checkpoints.list(job.id).data[0]
    assert checkpoint.fine_tuned_model_checkpoint == done.fine_tuned_model
    assert checkpoint.step_number == 2 and checkpoint.metrics.train_loss > 0
    answer = zephyr.chat.completions.create(
        model=done.fine_tuned_model, max_tokens=4,
        messages=[{"role": "user", "content": "What does the kettle say?"}])
    assert answer.choices[0].message.content is not None and answer.usage.completion_tokens >= 1
    with pytest.raises(openai.NotFoundError) as missing:  # no version 2 of that adapter
        zephyr.chat.completions.create(model=done.fine_tuned_model[:-1] + "2", max_tokens=2,
                                       messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):  # another tenant's model
        other.chat.completions.create(model=done.fine_tuned_model, max_tokens=2,
                                      messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job.id)


def test_fine_tuning_refuses_bad_requests(server, zephyr, store):
    lines = json.dumps({"messages": [{"role": "user", "content": "no answer"}]}).encode()
    bad_file = zephyr.files.create(file=("bad.jsonl", lines), purpose="fine-tune")
    cases = [({"model": "gpt-4o-mini", "training_file": bad_file.id}, "model"),
             ({"training_file": store["warranty"]}, "training_file"),
             ({"training_file": bad_file.id}, "training_file"),
             ({"training_file": bad_file.id, "validation_file": bad_file.id}, "validation_file"),
             ({"training_file": bad_file.id, "method": {"type": "dpo"}}, "method.type")]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as bad:
            zephyr.fine_tuning.jobs.create(**{"model": base_model(server), **fields})
        assert bad.value.body["param"] == param, (fields, bad.value.body)
