"""The README's "OpenAI compatibility" table against the OpenAPI document, both ways:
every ``/v1`` route the server has is a row; every served row's route is in the
document, with exactly the request parameters the table lists as accepted; a parameter
the table says is refused is not accepted; an endpoint it says is not served is not."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from lorag.app.settings import Settings
from server.app import create_app
from tests.unit.chat_fakes import FakeContainer

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- openai-compat:start -->", "<!-- openai-compat:end -->"
ROUTE = re.compile(r"^`(GET|POST|DELETE|PUT|PATCH) (/v1/\S*)`$")


class Support(str, Enum):
    SUPPORTED = "supported"
    DIFFERENTLY = "supported differently"
    REFUSED = "refused (400)"
    NOT_SERVED = "not served (404)"
    EXTENSION = "lorag extension"


ACCEPTED = {Support.SUPPORTED, Support.DIFFERENTLY, Support.EXTENSION}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    parameter: str | None
    support: Support


def table_rows(text: str) -> list[Row]:
    """The rows between the markers; raises AssertionError naming a malformed one."""
    assert START in text and END in text, "the README lost its OpenAI compatibility table"
    lines = text.split(START, 1)[1].split(END, 1)[0].strip().splitlines()[2:]
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a row needs 4 cells: {line}"
        route = ROUTE.match(cells[0])
        assert route, f"the endpoint is `METHOD /v1/path`: {line}"
        parameter = cells[1].strip("`") or None
        rows.append(Row(route[1], route[2], parameter, Support(cells[2])))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return table_rows(README.read_text())


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    container = FakeContainer(Settings(data_dir=tmp_path_factory.mktemp("compat"), environment="test"))
    try:
        return create_app(container).openapi()
    finally:
        container.close()


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, ops in document["paths"].items()
            if path.startswith("/v1/") for method, op in ops.items()}


def parameters(document: dict, operation: dict) -> set[str]:
    """Query parameters and the request body's fields (every content type)."""
    names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    for body in (operation.get("requestBody") or {}).get("content", {}).values():
        names |= set(_resolve(document, body["schema"]).get("properties", {}))
    return names


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def problems(rows: list[Row], document: dict) -> list[str]:
    """Where the table and the OpenAPI document disagree (empty: they agree)."""
    found = []
    endpoints = {(r.method, r.path): r for r in rows if r.parameter is None}
    keys = [(r.method, r.path, r.parameter) for r in rows]
    found += [f"listed twice: {k}" for k in set(keys) if keys.count(k) > 1]
    found += [f"{r}: list the endpoint itself first" for r in rows
              if (r.method, r.path) not in endpoints]
    served = operations(document)
    found += [f"add this route to the table: {k}" for k in sorted(set(served) - set(endpoints))]
    for key, row in endpoints.items():
        if (row.support is Support.NOT_SERVED) == (key in served):
            found.append(f"{row}: the server {'serves' if key in served else 'has no'} such route")
        if key not in served or row.support not in (Support.SUPPORTED, Support.DIFFERENTLY):
            continue
        accepted = parameters(document, served[key])
        listed = {r.parameter: r.support for r in rows
                  if (r.method, r.path) == key and r.parameter is not None}
        found += [f"{key}: list the parameter {name}" for name in sorted(accepted - set(listed))]
        found += [f"{key} {name}: the table says {support.value}, the route "
                  f"{'accepts' if name in accepted else 'refuses'} it"
                  for name, support in listed.items() if (name in accepted) != (support in ACCEPTED)]
    return found


def test_the_table_agrees_with_the_openapi_document(rows, document):
    assert problems(rows, document) == []


def test_drift_is_caught(rows, document):
    chat = ("POST", "/v1/chat/completions")
    without_a_route = [r for r in rows if (r.method, r.path) != ("POST", "/v1/embeddings")]
    assert problems(without_a_route, document) == [
        "add this route to the table: ('POST', '/v1/embeddings')"]
    without_a_parameter = [r for r in rows if (r.method, r.path, r.parameter) != (*chat, "n")]
    assert problems(without_a_parameter, document) == [f"{chat}: list the parameter n"]
    claims_a_refused_one = [Row(*chat, "audio", Support.SUPPORTED) if r.parameter == "audio"
                            and (r.method, r.path) == chat else r for r in rows]
    assert problems(claims_a_refused_one, document) == [
        f"{chat} audio: the table says supported, the route refuses it"]
    served_as_not = [Row(*chat, None, Support.NOT_SERVED) if (r.method, r.path, r.parameter) ==
                     (*chat, None) else r for r in rows]
    assert len(problems(served_as_not, document)) == 1
