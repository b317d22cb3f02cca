"""Brands' evaluation sets (the answer gate's questions) put, read and deleted through the
service, the admin routes and the CLI: validated line by line (the 4xx names the line and
the field), written whole, audited, the tenant's own."""

from __future__ import annotations

import json

import pytest

from lorag.app.rollouts.evaluation_sets import MAX_SET_BYTES, evaluation_set_path
from lorag.cli.main import main as cli
from lorag.core.errors import InvalidInput, NotFound, PayloadTooLarge
from tests.reliability.inprocess import ADMIN, client, container

GOOD = (b'{"question": "How long is the warranty?", "reference": "Two years."}\n\n'
        b'{"question": "Returns?", "gold_ids": ["returns"], "id": "q2"}\n')
PATH = "/admin/tenants/acme/brands/support/evaluation"


@pytest.fixture
def app(tmp_path, tiny_model):
    lorag = container(tmp_path / "data", tiny_model)
    for tenant in ("acme", "globex"):
        lorag.tenants.create(tenant)
        lorag.brands.create(tenant, "support")
    yield lorag
    lorag.close()


@pytest.mark.parametrize("data, param, words", [
    (b'{"question": "ok"}\n{"question": ""}\n', "line 2: question", "non-empty string"),
    (b'{"question": "ok"}\n\n{"question": "a", "gold_ids": []}', "line 3: gold_ids", "gold_ids"),
    (b'{"question": "ok", "answer": "x"}', "line 1: answer", "unknown field"),
    (b'{"question": "ok"}\n{"question": "b"', "line 2: json", "not valid JSON"),
    (b'["question"]', "line 1: json", "JSON object"),
    (b'{"question": "a", "reference": 3}', "line 1: reference", "reference"),
    (b"\n  \n", "body", "no questions"),
    (b'{"question": "caf\xe9"}', "body", "not UTF-8"),
])
def test_a_bad_set_is_refused_naming_the_line_and_field_and_nothing_changes(app, data, param,
                                                                            words):
    sets = app.evaluation_sets
    sets.put("acme", "support", GOOD)
    with pytest.raises(InvalidInput) as refused:
        sets.put("acme", "support", data)
    assert refused.value.param == param and words in refused.value.message
    assert [i["question"] for i in sets.get("acme", "support").items] == [
        "How long is the warranty?", "Returns?"]  # the old set, whole


def test_put_get_delete_are_audited_and_feed_the_answer_gate(app):
    sets = app.evaluation_sets
    with pytest.raises(NotFound):
        sets.get("acme", "support")
    stored = sets.put("acme", "support", GOOD)
    assert stored.to_dict()["questions"] == 2 and stored.items[1]["id"] == "q2"
    path = evaluation_set_path(app.layout, "acme", "support")
    assert path.read_bytes() == (b'{"question": "How long is the warranty?", "reference": '
                                 b'"Two years."}\n{"question": "Returns?", "gold_ids": '
                                 b'["returns"], "id": "q2"}\n')
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary left
    sets.put("acme", "support", b'{"question": "Only one?"}')
    assert len(sets.get("acme", "support").items) == 1
    sets.delete("acme", "support")
    assert not path.exists()
    with pytest.raises(NotFound):
        sets.delete("acme", "support")
    with pytest.raises(NotFound) as no_brand:
        sets.put("acme", "nope", GOOD)
    assert no_brand.value.param in ("brand", "model")
    with pytest.raises(PayloadTooLarge):
        sets.put("acme", "support", b" " * (MAX_SET_BYTES + 1))
    records = [r for r in app.audit.list("acme") if r.action.startswith("evaluation.")]
    assert [r.action for r in records] == ["evaluation.put", "evaluation.put",
                                           "evaluation.delete"]
    assert records[0].before is None and records[0].after["questions"] == 2
    assert records[1].before == records[0].after and records[2].after is None
    assert app.audit.verify().ok


def test_evaluation_set_routes_over_http(app):
    with client(app) as http:
        put = http.put(PATH, headers=ADMIN | {"Content-Type": "application/x-ndjson"}, content=GOOD)
        assert put.status_code == 200 and put.json()["questions"] == 2
        got = http.get(PATH, headers=ADMIN).json()
        assert got == put.json() and got["items"][0]["reference"] == "Two years."
        bad = http.put(PATH, headers=ADMIN, content=b'{"question": "a"}\n{"question": 7}')
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "line 2: question"
        assert "line 2" in bad.json()["error"]["message"]
        assert http.get(PATH, headers=ADMIN).json()["sha256"] == got["sha256"]  # unchanged
        other = "/admin/tenants/globex/brands/support/evaluation"
        assert http.get(other, headers=ADMIN).status_code == 404  # globex has none
        assert http.put("/admin/tenants/acme/brands/nope/evaluation", headers=ADMIN,
                        content=GOOD).status_code == 404
        key = app.tenants.issue_key("acme").secret
        assert http.get(PATH, headers={"Authorization": f"Bearer {key}"}).status_code in (401, 403)
        deleted = http.delete(PATH, headers=ADMIN)
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert http.delete(PATH, headers=ADMIN).status_code == 404


def test_evaluation_set_cli(app, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LORAG_DATA_DIR", str(app.settings.data_dir))
    monkeypatch.setenv("LORAG_ENGINE__MODEL", app.settings.engine.model)
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(GOOD)
    bad.write_text('{"question": "a"}\n{"question": "b", "gold_ids": "doc"}\n')
    assert cli(["rollouts", "evaluation", "put", "--tenant", "acme", "support", str(good)]) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == 2
    assert cli(["rollouts", "evaluation", "put", "--tenant", "acme", "support", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert cli(["rollouts", "evaluation", "show", "--tenant", "acme", "support"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 2
    assert cli(["rollouts", "evaluation", "put", "--tenant", "acme", "support",
                str(tmp_path / "missing.jsonl")]) == 2
    assert cli(["rollouts", "evaluation", "delete", "--tenant", "acme", "support"]) == 0
    assert not evaluation_set_path(app.layout, "acme", "support").exists()
