"""Rollouts over HTTP, in-process on the real container (tenants, adapter store with the
tiny model, brands, catalog) and a recording fake engine: stored answers, feedback,
shadow traffic, promotion gates, automatic rollback on errors, readout (HTTP, CLI,
Prometheus) and the audit log (who, before, after; verify)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters.engines.protocol import GenerationChunk
from lorag.app.quality.metrics import AnswerMetrics
from lorag.cli.main import main as cli
from lorag.core.errors import Unavailable
from retrieval.embedders import FakeEmbedder
from tests.reliability.inprocess import ADMIN, RecordingEngine, bearer, client, container
from tests.unit.test_answer_metrics import WordJudge


class CanaryFails(RecordingEngine):
    """Fails every request for adapter version 2 (a broken canary)."""

    async def generate(self, request):
        if request.adapter is not None and request.adapter.version == 2:
            raise Unavailable("the canary's kernel crashed")
        async for chunk in super().generate(request):
            yield chunk


@pytest.fixture
def app(tmp_path, tiny_model, tiny_lora_factory):
    lorag = container(tmp_path / "data", tiny_model)
    lorag.__dict__["engine"] = CanaryFails()
    for tenant in ("acme", "globex"):
        lorag.tenants.create(tenant)
    lora = tiny_lora_factory(seed=1)
    lorag.adapters.register("acme", "voice", lora)
    lorag.adapters.register("acme", "voice", lora)
    lorag.adapters.set_alias("acme", "voice", "canary", 2)
    lorag.brands.create("acme", "support", adapter="voice")
    lorag.adapters.register("globex", "voice", lora)
    lorag.brands.create("globex", "support", adapter="voice")
    yield lorag
    lorag.close()


@pytest.fixture
def http(app):
    with client(app) as c:
        yield c


@pytest.fixture
def keys(app):
    return {t: app.tenants.issue_key(t).secret for t in ("acme", "globex")}


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def ask(http, key, user="u1", **extra):
    return http.post("/v1/chat/completions", headers=bearer(key), json={
        "model": "support", "messages": [{"role": "user", "content": "hello"}], "user": user,
        "retrieval": {"mode": "off"}, **extra})


def test_stored_answers_keep_provenance_and_are_the_tenants_own(http, keys):
    answer = ask(http, keys["acme"], store=True, metadata={"topic": "greeting"}).json()
    not_stored = ask(http, keys["acme"]).json()
    stored = http.get(f"/v1/chat/completions/{answer['id']}", headers=bearer(keys["acme"])).json()
    assert stored["choices"] == answer["choices"] and stored["metadata"] == {"topic": "greeting"}
    prov = stored["provenance"]
    assert prov["target"] == "voice@stable" and prov["adapter"]["version"] == 1
    assert len(prov["adapter"]["weights_sha256"]) == 64 and prov["sampling"]["max_tokens"] > 0
    assert prov["index"] is None  # retrieval off: no index was read
    assert len(prov["prompt_template_sha256"]) == 64
    assert http.get(f"/v1/chat/completions/{not_stored['id']}",
                    headers=bearer(keys["acme"])).status_code == 404
    for path in (f"/v1/chat/completions/{answer['id']}",
                 f"/v1/chat/completions/{answer['id']}/messages"):
        assert http.get(path, headers=bearer(keys["globex"])).status_code == 404
    assert http.get("/v1/chat/completions", headers=bearer(keys["globex"])).json()["data"] == []
    listed = http.get("/v1/chat/completions?metadata[topic]=greeting",
                      headers=bearer(keys["acme"])).json()
    assert [d["id"] for d in listed["data"]] == [answer["id"]]
    assert http.get("/v1/chat/completions?metadata[topic]=other",
                    headers=bearer(keys["acme"])).json()["data"] == []


def test_feedback_once_same_again_is_idempotent_a_change_is_409(http, keys, app):
    answer = ask(http, keys["acme"], store=True).json()
    path = f"/v1/chat/completions/{answer['id']}/feedback"
    first = http.post(path, headers=bearer(keys["acme"]), json={"rating": -1, "tags": ["rude"]})
    assert first.status_code == 201
    again = http.post(path, headers=bearer(keys["acme"]), json={"rating": -1, "tags": ["rude"]})
    assert again.status_code == 200 and again.json() == first.json()
    change = http.post(path, headers=bearer(keys["acme"]), json={"rating": 1})
    assert change.status_code == 409 and change.json()["error"]["code"] == "feedback_exists"
    assert change.json()["error"]["param"] == "rating"
    bad = http.post(path, headers=bearer(keys["acme"]), json={"rating": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating"
    assert http.post(path, headers=bearer(keys["globex"]), json={"rating": 1}).status_code == 404
    readout = http.get("/v1/rollouts/support", headers=bearer(keys["acme"])).json()
    stable = [t for t in readout["targets"] if t["target"] == "voice@stable"][0]
    assert (stable["feedback_down"], stable["feedback_up"]) == (1, 0)
    assert http.get("/v1/rollouts/support", headers=bearer(keys["globex"])).json()["targets"] == []


def test_shadow_answers_are_stored_and_never_reach_a_client(http, keys, app):
    assert http.put("/admin/tenants/acme/brands/support/shadow", headers=ADMIN, json={
        "shadow": {"target": "voice@v1", "rate": 1.0}}).status_code == 200
    app.settings.rollouts.shadow_max_inflight = 4
    served = [ask(http, keys["acme"], user=f"u{i}", store=True).json() for i in range(3)]
    wait_for(lambda: all(app.answers.shadows("acme", a["id"]) for a in served))
    shadow_ids = {r for r in app.engine.by_id if r.endswith("-shadow")}
    assert shadow_ids == {a["id"] + "-shadow" for a in served}
    listed = http.get("/v1/chat/completions?limit=100", headers=bearer(keys["acme"])).json()
    assert {d["id"] for d in listed["data"]} == {a["id"] for a in served}
    for shadow_id in shadow_ids:
        assert http.get(f"/v1/chat/completions/{shadow_id}",
                        headers=bearer(keys["acme"])).status_code == 404
    kept = app.answers.shadows("acme", served[0]["id"])
    assert [a.role for a in kept] == ["shadow"] and kept[0].target == "voice@v1"
    roles = {t["role"] for t in app.rollouts.readout("acme", "support")["targets"]}
    assert roles == {"primary", "shadow"}


def test_a_shadow_over_its_time_limit_is_cancelled_aborted_and_not_stored(http, keys, app):
    assert http.put("/admin/tenants/acme/brands/support/shadow", headers=ADMIN, json={
        "shadow": {"target": "voice@v1", "rate": 1.0}}).status_code == 200
    app.settings.rollouts.shadow_timeout_seconds = 0.2
    engine, original = app.engine, app.engine.generate

    async def shadow_never_ends(request):
        if request.request_id.endswith("-shadow"):
            engine.by_id[request.request_id] = request
            await asyncio.sleep(3600)
        async for chunk in original(request):
            yield chunk

    engine.generate = shadow_never_ends
    served = ask(http, keys["acme"], store=True)
    assert served.status_code == 200 and served.json()["choices"][0]["message"]["content"]
    shadow_id = served.json()["id"] + "-shadow"
    wait_for(lambda: app.rollouts.shadow_timed_out == 1)
    wait_for(lambda: shadow_id in engine.aborted)  # its engine slot is freed
    assert app.answers.shadows("acme", served.json()["id"]) == []
    readout = http.get("/admin/tenants/acme/brands/support/rollout", headers=ADMIN).json()
    assert readout["shadow_timed_out"] == 1
    [shadow_row] = [t for t in readout["targets"] if t["role"] == "shadow"]
    assert shadow_row["errors"] == 1 and shadow_row["requests"] == 1
    app.settings.rollouts.shadow_timeout_seconds = None  # no limit: the shadow is kept
    engine.generate = original
    again = ask(http, keys["acme"], user="u2", store=True).json()
    wait_for(lambda: app.answers.shadows("acme", again["id"]))


def test_a_failing_canary_is_rolled_back_automatically_and_stable_serves_throughout(http, keys, app):
    assert http.put("/admin/tenants/acme/brands/support/split", headers=ADMIN, json={
        "split": [{"target": "voice@canary", "percent": 50}]}).status_code == 200
    statuses, served = [], []
    for i in range(200):
        response = ask(http, keys["acme"], user=f"user-{i}")
        statuses.append(response.status_code)
        if response.status_code == 200:
            served.append(i)
        if not app.brands.get("acme", "support").split:
            break
    assert not app.brands.get("acme", "support").split, "never rolled back"
    assert i < 60, f"rolled back only after {i + 1} requests"
    print(f"rolled back after {i + 1} requests")
    assert set(statuses) <= {200, 503}
    # every request the canary did not get was answered by the stable
    stable_requests = [r for r in app.engine.by_id.values() if r.adapter.version == 1]
    assert len(stable_requests) == len(served)
    after = [ask(http, keys["acme"], user=f"user-{j}").status_code for j in range(20)]
    assert after == [200] * 20
    records = http.get("/admin/tenants/acme/audit", headers=ADMIN).json()["data"]
    rollback = [r for r in records if r["action"] == "rollout.rollback"]
    assert len(rollback) == 1 and rollback[0]["actor"] == "system:rollback"
    assert rollback[0]["before"]["split"] and rollback[0]["after"]["split"] == []
    assert rollback[0]["after"]["reason"]["signal"] == "errors"
    readout = http.get("/admin/tenants/acme/brands/support/rollout", headers=ADMIN).json()
    assert readout["rollbacks"] and readout["split"] == []
    canary = [t for t in readout["targets"] if t["target"] == "voice@canary"][0]
    assert canary["errors"] == canary["requests"] > 0 and canary["version"] == 2
    metrics = http.get("/metrics").text
    assert 'lorag_target_errors_total{brand="support",role="split",target="voice@canary",' \
           'tenant="acme",version="2"}' in metrics


def test_promotion_to_stable_passes_the_gates_or_is_forced_and_recorded(http, keys, app,
                                                                          tiny_lora_factory,
                                                                          tmp_path):
    refused = http.put("/admin/tenants/acme/adapters/voice/aliases/stable", headers=ADMIN,
                       json={"version": 2})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "gates_failed"
    assert "training_report" in refused.json()["error"]["message"]
    report = {"heldout": {"base_perplexity": 10.0, "adapter_perplexity": 12.0},
              "general": {"perplexity_ratio": 1.5}, "marker": {"adapter_rate": 0.9}}
    folder = shutil.copytree(tiny_lora_factory(seed=1), tmp_path / "trained")
    (folder / "metrics.json").write_text(json.dumps(report))
    v3 = app.adapters.register("acme", "voice", folder)
    assert v3.lineage["training_report"] == report
    refused = http.put("/admin/tenants/acme/adapters/voice/aliases/stable", headers=ADMIN,
                       json={"version": 3}).json()["error"]
    assert "heldout_perplexity" in refused["message"] and "forgetting_ratio" in refused["message"]
    assert "marker_rate" not in refused["message"]
    assert app.adapters.aliases("acme", "voice")["stable"] == 1
    forced = http.put("/admin/tenants/acme/adapters/voice/aliases/stable", headers=ADMIN,
                      json={"version": 3, "force": True})
    assert forced.status_code == 200 and forced.json()["forced"] and forced.json()["previous"] == 1
    assert app.adapters.aliases("acme", "voice")["stable"] == 3
    lineage = app.adapters.get("acme", "voice", 3).lineage
    assert lineage["gates"][-1]["forced"] is True
    promoted = [r for r in app.audit.list("acme") if r.action == "adapter.promote"][-1]
    assert promoted.actor == "admin" and promoted.after["forced"] is True
    assert promoted.before == {"version": 1}
    canary = http.put("/admin/tenants/acme/adapters/voice/aliases/canary", headers=ADMIN,
                      json={"version": 1})  # other aliases need no gates
    assert canary.status_code == 200


def test_the_audit_log_names_who_changed_what_and_verify_finds_an_edit(http, keys, app,
                                                                       monkeypatch, capsys):
    http.patch("/admin/tenants/acme/brands/support", headers=ADMIN,
               json={"system_prompt": "Be brief."})
    http.post("/admin/tenants/acme/keys", headers=ADMIN)
    actions = [(r.action, r.actor) for r in app.audit.list("acme")]
    assert ("brand.update", "admin") in actions and ("key.issue", "admin") in actions
    assert all(r.tenant_id == "acme" for r in app.audit.list("acme"))
    tenant_view = http.get("/v1/audit", headers=bearer(keys["globex"])).json()["data"]
    assert tenant_view and all(r["tenant"] == "globex" for r in tenant_view)
    monkeypatch.setenv("LORAG_DATA_DIR", str(app.settings.data_dir))
    monkeypatch.setenv("LORAG_ENGINE__MODEL", app.settings.engine.model)
    assert cli(["audit", "verify"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert http.get("/admin/audit/verify", headers=ADMIN).json()["ok"] is True
    conn = sqlite3.connect(app.settings.data_dir / "lorag.db")
    conn.execute("UPDATE audit_log SET actor='key:999' WHERE seq=2")
    conn.commit()
    assert cli(["audit", "verify"]) == 1
    assert json.loads(capsys.readouterr().out)["bad_seq"] == 2
    conn.execute("UPDATE audit_log SET actor=(SELECT actor FROM audit_log WHERE seq=1) WHERE seq=2")
    conn.commit()
    conn.execute("DELETE FROM audit_log WHERE seq=3")
    conn.commit()
    conn.close()
    result = app.audit.verify()
    assert not result.ok and result.bad_seq in (2, 4)


def test_cli_readout_split_and_rollback(app, monkeypatch, capsys):
    monkeypatch.setenv("LORAG_DATA_DIR", str(app.settings.data_dir))
    monkeypatch.setenv("LORAG_ENGINE__MODEL", app.settings.engine.model)
    assert cli(["rollouts", "split", "--tenant", "acme", "support", "voice@canary=5"]) == 0
    assert app.brands.get("acme", "support").split[0].percent == 5.0
    capsys.readouterr()
    assert cli(["rollouts", "show", "--tenant", "acme", "support"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["split"] == [{"target": "voice@canary", "percent": 5.0}]
    assert cli(["rollouts", "rollback", "--tenant", "acme", "support"]) == 0
    assert app.brands.get("acme", "support").split == ()
    actors = {r.actor for r in app.audit.list("acme") if r.action.startswith("rollout.")}
    assert len(actors) == 1 and actors.pop().startswith("cli:")
    assert cli(["rollouts", "show", "--tenant", "globex", "nope"]) == 2


class VersionReplies(RecordingEngine):
    """v1 answers with a sentence the source supports; v2 adds one it does not."""

    async def generate(self, request):
        self.by_id[request.request_id] = request
        text = "W1 w1 [1]." + ("" if request.adapter.version == 1 else " Zebra jumps.")
        yield GenerationChunk(text=text, finish_reason="stop", prompt_tokens=3,
                              completion_tokens=2)


def test_readout_has_each_targets_mean_groundedness_and_count(tmp_path, tiny_model,
                                                              tiny_lora_factory):
    lorag = container(tmp_path / "data", tiny_model)
    lorag.__dict__["engine"] = VersionReplies()
    lorag.answer_checks.metrics = AnswerMetrics(FakeEmbedder(), judge=WordJudge(), threshold=0.5)
    lorag.tenants.create("acme")
    for _ in range(2):
        lorag.adapters.register("acme", "voice", tiny_lora_factory(seed=1))
    lorag.adapters.set_alias("acme", "voice", "canary", 2)
    lorag.brands.create("acme", "support", adapter="voice",
                        quality={"grounding": "flag", "threshold": 0.75})
    lorag.brands.create("acme", "unchecked", adapter="voice")
    lorag.documents.ingest("acme", [{"id": "w", "text": "w1 w1 w1 w1"}])
    lorag.rollouts.set_split("acme", "support", [{"target": "voice@canary", "percent": 50}])
    lorag.rollouts.set_shadow("acme", "support", {"target": "voice@v2", "rate": 1.0})
    key = lorag.tenants.issue_key("acme").secret
    with client(lorag) as http:
        answers = [http.post("/v1/chat/completions", headers=bearer(key), json={
            "model": "support", "messages": [{"role": "user", "content": "w1?"}],
            "user": f"user-{i}", "store": True, "stream": i % 2 == 1}) for i in range(16)]
        assert [a.status_code for a in answers] == [200] * 16
        assert ask(http, key, store=True, model="unchecked").status_code == 200
        wait_for(lambda: not lorag.rollouts._shadows)
        readout = http.get("/v1/rollouts/support", headers=bearer(key)).json()
        rows = {t["target"]: t for t in readout["targets"]}
        stable, canary = rows["voice@stable"], rows["voice@canary"]
        assert stable["requests"] > 0 and canary["requests"] > 0
        assert stable["requests"] + canary["requests"] == 16
        assert (stable["groundedness"], stable["groundedness_count"]) == (1.0, stable["requests"])
        assert (canary["groundedness"], canary["groundedness_count"]) == (0.5, canary["requests"])
        shadow = [t for t in readout["targets"] if t["role"] == "shadow"][0]  # scored alike
        assert shadow["requests"] > 0 and shadow["groundedness"] == 0.5
        assert shadow["groundedness_count"] == shadow["requests"]
        [plain] = http.get("/v1/rollouts/unchecked", headers=bearer(key)).json()["targets"]
        assert (plain["requests"], plain["groundedness"], plain["groundedness_count"]) == (1, None, 0)
        stored = lorag.answers.list("acme", brand="support", limit=100)[0]
        assert len(stored) == 16
        for answer in stored:  # kept with each answer, streamed or not
            assert answer.groundedness == (1.0 if answer.adapter_version == 1 else 0.5)
            assert answer.completion["grounding"]["groundedness"] == answer.groundedness
        metrics = http.get("/metrics").text
        labels = 'brand="support",role="split",target="voice@canary",tenant="acme",version="2"'
        assert f"lorag_target_groundedness_count{{{labels}}} {float(canary['requests'])}" in metrics
        assert f"lorag_target_groundedness_sum{{{labels}}} {canary['requests'] * 0.5}" in metrics
    lorag.close()


class VersionEcho(RecordingEngine):
    """Answers with the adapter version that generated the answer."""

    async def generate(self, request):
        self.by_id[request.request_id] = request
        version = request.adapter.version if request.adapter else 0
        yield GenerationChunk(text=f"from-v{version}", finish_reason="stop",
                              prompt_tokens=3, completion_tokens=1)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(rate=st.floats(0.05, 1.0), users=st.lists(st.text(min_size=1, max_size=8), min_size=1,
                                                 max_size=4), stream=st.booleans())
def test_shadow_answers_never_reach_a_client(shadow_world, rate, users, stream):
    http, key, app = shadow_world
    http.put("/admin/tenants/acme/brands/support/shadow", headers=ADMIN,
             json={"shadow": {"target": "voice@canary", "rate": rate}}).raise_for_status()
    for user in users:
        response = ask(http, key, user=user, store=True, stream=stream)
        assert response.status_code == 200
        assert "from-v2" not in response.text and "-shadow" not in response.text
        assert "from-v1" in response.text
    listed = http.get("/v1/chat/completions?limit=100", headers=bearer(key)).json()["data"]
    assert all(d["choices"][0]["message"]["content"] == "from-v1" for d in listed)
    assert not any(d["id"].endswith("-shadow") for d in listed)


@pytest.fixture(scope="module")
def shadow_world(tmp_path_factory, tiny_model, tiny_lora_factory):
    lorag = container(tmp_path_factory.mktemp("shadow") / "data", tiny_model)
    lorag.__dict__["engine"] = VersionEcho()
    lorag.settings.rollouts.shadow_max_inflight = 8
    lorag.tenants.create("acme")
    for _ in range(2):
        lorag.adapters.register("acme", "voice", tiny_lora_factory(seed=1))
    lorag.adapters.set_alias("acme", "voice", "canary", 2)
    lorag.brands.create("acme", "support", adapter="voice")
    key = lorag.tenants.issue_key("acme").secret
    with client(lorag) as http:
        yield http, key, lorag
        wait_for(lambda: not lorag.rollouts._shadows)
        shadows = [r for r in lorag.engine.by_id if r.endswith("-shadow")]
        assert shadows, "no request was ever shadowed"
        assert all(lorag.engine.by_id[r].adapter.version == 2 for r in shadows)
    lorag.close()
