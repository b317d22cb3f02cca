"""Fine-tuning jobs on the real trainer and adapter registry (tiny model): lorag's
``domain`` method, the resulting model id, and requests refused before any job starts."""

from __future__ import annotations

import io
import json
import time

import pytest

from lorag.app.container import Lorag
from lorag.app.fine_tuning import FineTuningRequest, Hyperparameters, Method
from lorag.app.settings import Settings
from lorag.core.errors import InvalidInput, NotFound
from lorag.testing.tiny_model import tiny_corpus

CHAT = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model):
    lorag = Lorag(Settings(data_dir=tmp_path_factory.mktemp("ft") / "data", environment="test",
                           engine={"model": str(tiny_model)}))
    for tenant in ("acme", "other"):
        lorag.tenants.create(tenant)
    yield lorag
    lorag.close()


def upload(app, lines: list[dict], purpose: str = "fine-tune", tenant: str = "acme"):
    content = "\n".join(json.dumps(line) for line in lines).encode()
    return app.files.create(tenant, "train.jsonl", purpose, io.BytesIO(content))


def finished(app, row_id: str):
    deadline = time.monotonic() + 300
    while (view := app.fine_tuning.view("acme", row_id)).status in ("queued", "running"):
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    return view


def test_domain_method_trains_on_text_lines_and_registers_a_version(app):
    texts = upload(app, [{"text": text} for text in tiny_corpus()[:6]])
    started = app.fine_tuning.create("acme", FineTuningRequest(
        model=app.fine_tuning.base_model_id, training_file=texts.id, method=Method.DOMAIN,
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=2), suffix="domain"))
    assert started.row.hyperparameters == {"n_epochs": 1, "batch_size": 2,
                                           "learning_rate_multiplier": 1.0}
    done = finished(app, started.row.id)
    assert done.status == "succeeded", done.job.error
    assert done.fine_tuned_model == f"ft:{app.fine_tuning.base_model_id}:acme:domain:1"
    assert done.metrics["kind"] == "domain" and done.metrics["train"]["steps"] == 3
    assert app.models.get("acme", done.fine_tuned_model).target == "domain@v1"
    assert app.adapters.resolve_target("acme", "domain", "v1").version == 1
    with pytest.raises(NotFound):
        app.models.get("other", done.fine_tuned_model)


@pytest.mark.parametrize(("lines", "purpose", "fields", "param"), [
    ([CHAT], "fine-tune", {"model": "gpt-4o-mini"}, "model"),
    ([CHAT], "assistants", {}, "training_file"),
    ([CHAT], "fine-tune", {"method": Method.DOMAIN}, "training_file"),  # no "text" lines
    ([{"messages": [{"role": "user", "content": "no answer"}]}], "fine-tune", {}, "training_file"),
    ([CHAT], "fine-tune", {"suffix": "Not A Name"}, "suffix"),
])
def test_requests_are_refused_before_any_job(app, lines, purpose, fields, param):
    file = upload(app, lines, purpose)
    jobs = len(app.jobs.list("acme"))
    request = FineTuningRequest(**{"model": app.fine_tuning.base_model_id,
                                   "training_file": file.id, **fields})
    with pytest.raises(InvalidInput) as refused:
        app.fine_tuning.create("acme", request)
    assert refused.value.param == param
    assert len(app.jobs.list("acme")) == jobs


def test_another_tenants_file_is_not_found(app):
    theirs = upload(app, [CHAT], tenant="other")
    with pytest.raises(NotFound) as missing:
        app.fine_tuning.create("acme", FineTuningRequest(model=app.fine_tuning.base_model_id,
                                                         training_file=theirs.id))
    assert missing.value.param == "training_file"
