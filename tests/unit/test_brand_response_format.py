"""A brand's default ``response_format`` ("always reply in this JSON"): checked when set
(the field named), kept by the store and its migration, shown in the brand's JSON, set
through the admin routes and the CLI, and applied by chat to a request that asks for no
format of its own (the request's own wins; ``{"type": "text"}`` turns it off)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from adapters.engines.protocol import EngineFeature
from lorag.app.chat import StructuredOutput
from lorag.app.settings import Settings
from lorag.core.brands import MIGRATIONS, BrandStore, parse_response_format
from lorag.core.db import Database
from lorag.core.errors import InvalidInput
from lorag.core.migrations import applied, migrate
from lorag.app.chat import ChatService
from server.app import create_app
from tests.unit.chat_fakes import FakeContainer, default_brands
from tests.unit.test_chat import Setup, ask, run

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA,
                                                      "strict": True}}
ADMIN_KEY = "admin-" + "y" * 40


class NoAdapters:
    def exists(self, tenant_id: str, name: str) -> bool:
        return False


def store(tmp_path) -> BrandStore:
    db = Database(tmp_path / "lorag.db")
    db.apply_schema("CREATE TABLE tenants (id TEXT PRIMARY KEY)")
    with db.transaction() as conn:
        conn.execute("INSERT INTO tenants VALUES ('acme')")
    return BrandStore(db, NoAdapters())


# -- checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,param", [
    ("json", "response_format"),
    ({"type": "yaml"}, "response_format.type"),
    ({}, "response_format.type"),
    ({"type": "json_object", "schema": {}}, "response_format.schema"),
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "a b", "schema": SCHEMA}},
     "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "r", "schema": "object"}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "strict": "yes"}},
     "response_format.json_schema.strict"),
    ({"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "extra": 1}},
     "response_format.json_schema.extra"),
])
def test_a_bad_response_format_is_refused_naming_the_field(value, param):
    with pytest.raises(InvalidInput) as error:
        parse_response_format(value)
    assert error.value.param == param


def test_good_response_formats_are_kept_and_text_means_none():
    assert parse_response_format({"type": "json_object"}) == {"type": "json_object"}
    assert parse_response_format(JSON_SCHEMA) == JSON_SCHEMA
    assert parse_response_format({"type": "text"}) is None
    assert parse_response_format(None) is None


# -- the store and its migration ------------------------------------------------------------

def test_the_store_round_trips_the_default_and_refuses_bad_ones_untouched(tmp_path):
    brands = store(tmp_path)
    created = brands.create("acme", "bot", response_format=JSON_SCHEMA)
    assert created.response_format == JSON_SCHEMA
    assert brands.get("acme", "bot") == created
    assert brands.get("acme", "bot").to_dict()["response_format"] == JSON_SCHEMA
    with pytest.raises(InvalidInput) as error:
        brands.update("acme", "bot", response_format={"type": "json_schema", "json_schema": {}})
    assert error.value.param == "response_format.json_schema.name"
    assert brands.get("acme", "bot").response_format == JSON_SCHEMA  # unchanged
    assert brands.update("acme", "bot", system_prompt="x").response_format == JSON_SCHEMA
    assert brands.update("acme", "bot", response_format={"type": "json_object"}) \
        .response_format == {"type": "json_object"}
    assert brands.update("acme", "bot", response_format=None).response_format is None
    assert brands.get("acme", "bot").response_format is None
    with pytest.raises(InvalidInput):
        brands.create("acme", "bad", response_format={"type": "xml"})
    assert [b.name for b in brands.list("acme")] == ["bot"]


def test_migration_3_adds_the_column_and_old_brands_have_no_default(tmp_path):
    db = Database(tmp_path / "lorag.db")
    db.apply_schema("CREATE TABLE tenants (id TEXT PRIMARY KEY)")
    from lorag.core.brands import SCHEMA as BRANDS_SCHEMA
    db.apply_schema(BRANDS_SCHEMA)
    assert migrate(db, "brands", MIGRATIONS[:2]) == [1, 2]
    with db.transaction() as conn:
        conn.execute("INSERT INTO tenants VALUES ('acme')")
        conn.execute("INSERT INTO brands (tenant_id, name, created_at, updated_at) "
                     "VALUES ('acme', 'old', 1.0, 1.0)")
    brands = BrandStore(db, NoAdapters())  # runs migration 3
    assert applied(db, "brands") == 3
    conn = sqlite3.connect(tmp_path / "lorag.db")
    assert "response_format" in {row[1] for row in conn.execute("PRAGMA table_info(brands)")}
    conn.close()
    old = brands.get("acme", "old")
    assert old.response_format is None and old.to_dict()["response_format"] is None
    assert brands.update("acme", "old", response_format=JSON_SCHEMA).response_format == JSON_SCHEMA
    assert migrate(db, "brands", MIGRATIONS) == []  # reopening runs nothing again


# -- chat: precedence -----------------------------------------------------------------------

def with_default(response_format: dict | None) -> Setup:
    brands = default_brands()
    brands["acme", "support"] = replace(brands["acme", "support"],
                                        response_format=parse_response_format(response_format))
    return Setup(brands=brands)


def test_a_request_without_a_format_gets_its_brands_default():
    service, _, _ = with_default(JSON_SCHEMA).build()
    assert run(service.prepare("acme", ask())).sampling.structured == StructuredOutput(SCHEMA)
    service, _, _ = with_default({"type": "json_object"}).build()
    assert run(service.prepare("acme", ask())).sampling.structured == StructuredOutput()
    # another brand of the tenant, without a default, answers in plain text
    assert run(service.prepare("acme", ask(brand="plain"))).sampling.structured is None


def test_the_requests_own_format_wins_and_text_turns_the_default_off():
    service, _, _ = with_default(JSON_SCHEMA).build()
    own = run(service.prepare("acme", ask(response_format=StructuredOutput())))
    assert own.sampling.structured == StructuredOutput()
    off = run(service.prepare("acme", ask(brand_format=False)))
    assert off.sampling.structured is None


def test_a_forced_tool_call_is_constrained_to_its_arguments_not_the_default():
    from tests.unit.test_chat_openai import WEATHER
    service, _, _ = with_default(JSON_SCHEMA).build()
    prepared = run(service.prepare("acme", ask(tools=(WEATHER,), tool_choice="get_weather")))
    assert prepared.sampling.structured == StructuredOutput(WEATHER.parameters)


def test_an_engine_without_guided_decoding_refuses_the_default_as_its_own():
    service, _, engine = with_default(JSON_SCHEMA).build()
    engine.features = frozenset({EngineFeature.TOP_LOGPROBS})
    with pytest.raises(InvalidInput) as error:
        run(service.prepare("acme", ask()))
    assert error.value.param == "response_format" and error.value.code == "unsupported_parameter"
    assert run(service.prepare("acme", ask(brand_format=False))).sampling.structured is None


# -- HTTP: the admin routes and chat --------------------------------------------------------

@pytest.fixture
def http(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", environment="test")
    settings.server.admin_key = SecretStr(ADMIN_KEY)
    container = FakeContainer(settings)
    container.tenants.create("acme")
    container.brands = BrandStore(container.catalog, NoAdapters(), container.audit)
    container.chat = ChatService(brands=container.brands, adapters=container.adapters,
                                 retrieval=container.retrieval, engine=container.engine,
                                 settings=settings.chat)
    key = container.tenants.issue_key("acme").secret
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client, container, key
    container.close()


def test_http_admin_sets_shows_and_clears_the_default_and_chat_uses_it(http):
    client, container, key = http
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    url = "/admin/tenants/acme/brands"
    response = client.post(url, headers=admin, json={"name": "bot", "response_format": {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": "not a schema"}}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema.schema"
    response = client.post(url, headers=admin, json={"name": "bot", "response_format": JSON_SCHEMA})
    assert response.status_code == 201, response.text
    assert response.json()["response_format"] == JSON_SCHEMA
    assert client.get(f"{url}/bot", headers=admin).json()["response_format"] == JSON_SCHEMA

    tenant = {"Authorization": f"Bearer {key}"}
    chat = {"model": "bot", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", headers=tenant, json=chat).status_code == 200
    assert container.engine.requests[-1].sampling.structured == StructuredOutput(SCHEMA)
    client.post("/v1/chat/completions", headers=tenant,
                json={**chat, "response_format": {"type": "text"}})
    assert container.engine.requests[-1].sampling.structured is None
    client.post("/v1/chat/completions", headers=tenant,
                json={**chat, "response_format": {"type": "json_object"}})
    assert container.engine.requests[-1].sampling.structured == StructuredOutput()

    response = client.patch(f"{url}/bot", headers=admin, json={"response_format": {"type": "yaml"}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format.type"
    assert client.patch(f"{url}/bot", headers=admin, json={"system_prompt": "x"}) \
        .json()["response_format"] == JSON_SCHEMA  # untouched by other changes
    response = client.patch(f"{url}/bot", headers=admin, json={"response_format": None})
    assert response.status_code == 200 and response.json()["response_format"] is None
    client.post("/v1/chat/completions", headers=tenant, json=chat)
    assert container.engine.requests[-1].sampling.structured is None

    container.engine.features = frozenset()
    client.patch(f"{url}/bot", headers=admin, json={"response_format": {"type": "json_object"}})
    response = client.post("/v1/chat/completions", headers=tenant, json=chat)
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"


def test_cli_option_reaches_the_store(tmp_path, monkeypatch, capsys):
    from lorag.cli import adapters as cli
    brands = store(tmp_path)

    class App:
        pass

    app = App()
    app.brands = brands
    monkeypatch.setattr(cli, "Lorag", lambda: app)
    parser = cli.argparse.ArgumentParser()
    cli._brand_commands(parser.add_subparsers())
    args = parser.parse_args(["create", "--tenant", "acme", "bot", "--response-format",
                              json.dumps(JSON_SCHEMA)])
    args.handler(args)
    assert json.loads(capsys.readouterr().out)["response_format"] == JSON_SCHEMA
    args = parser.parse_args(["update", "--tenant", "acme", "bot", "--response-format",
                              '{"type": "text"}'])
    args.handler(args)
    assert brands.get("acme", "bot").response_format is None
    args = parser.parse_args(["update", "--tenant", "acme", "bot", "--response-format", "{no"])
    with pytest.raises(InvalidInput) as error:
        args.handler(args)
    assert error.value.param == "response_format"
