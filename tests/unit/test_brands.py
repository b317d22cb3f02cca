"""BrandStore: CRUD per tenant, an adapter of the same tenant, retrieval defaults."""

import pytest

from lorag.core.errors import Conflict, InvalidInput, NotFound
from lorag.core.modes import RetrievalMode
from tests.adapter_fixtures import app, lora  # noqa: F401


def test_create_get_list_delete(app):
    brand = app.brands.create("acme", "helpdesk", system_prompt="Be brief.", top_k=3, mode="dense",
                              filters={"lang": "en"})
    assert app.brands.get("acme", "helpdesk") == brand
    assert (brand.adapter_name, brand.top_k, brand.mode, brand.filters) == (None, 3, "dense", {"lang": "en"})
    assert app.brands.get("acme", "helpdesk").mode is RetrievalMode.DENSE  # stored as a string
    assert [b.name for b in app.brands.list("acme")] == ["helpdesk"]
    app.brands.delete("acme", "helpdesk")
    with pytest.raises(NotFound) as err:
        app.brands.get("acme", "helpdesk")
    assert err.value.param == "brand"


def test_brand_resolves_the_newest_adapter_version(app, lora):
    app.adapters.register("acme", "voice", lora)
    brand = app.brands.create("acme", "helpdesk", adapter="voice")
    v2 = app.adapters.register("acme", "voice", lora)
    assert app.adapters.resolve("acme", brand.adapter_name).int_id == v2.id


def test_adapter_must_exist_in_the_same_tenant(app, lora):
    app.adapters.register("globex", "voice", lora)
    with pytest.raises(NotFound) as err:
        app.brands.create("acme", "helpdesk", adapter="voice")
    assert err.value.param == "adapter"
    assert app.brands.list("acme") == []


def test_brands_are_per_tenant(app):
    app.brands.create("acme", "helpdesk")
    app.brands.create("globex", "helpdesk")
    with pytest.raises(Conflict):
        app.brands.create("acme", "helpdesk")
    app.brands.delete("acme", "helpdesk")
    assert [b.tenant_id for b in app.brands.list("globex")] == ["globex"]
    with pytest.raises(NotFound):
        app.brands.delete("acme", "helpdesk")
    with pytest.raises(NotFound) as err:
        app.brands.create("nobody", "helpdesk")
    assert err.value.param == "tenant"


@pytest.mark.parametrize("field, value, param", [
    ("name", "Bad Name", "brand"), ("top_k", 0, "top_k"), ("top_k", 101, "top_k"),
    ("top_k", True, "top_k"), ("mode", "semantic", "mode"), ("filters", ["x"], "filters"),
    ("system_prompt", "x" * 20_001, "system_prompt"), ("adapter", "../x", "adapter"),
])
def test_invalid_fields_are_named(app, field, value, param):
    kwargs = {"name": "helpdesk", field: value}
    with pytest.raises(InvalidInput) as err:
        app.brands.create("acme", kwargs.pop("name"), **kwargs)
    assert err.value.param == param


def test_update_switches_adapter_and_keeps_other_fields(app, lora):
    app.adapters.register("acme", "voice", lora)
    app.brands.create("acme", "helpdesk", system_prompt="Be brief.", top_k=4)
    updated = app.brands.update("acme", "helpdesk", adapter="voice")
    assert (updated.adapter_name, updated.system_prompt, updated.top_k) == ("voice", "Be brief.", 4)
    assert app.brands.update("acme", "helpdesk", adapter=None).adapter_name is None
    with pytest.raises(NotFound):
        app.brands.update("acme", "helpdesk", adapter="missing")
    assert app.brands.get("acme", "helpdesk").adapter_name is None


def test_tenant_delete_cascades_to_brands(app):
    app.brands.create("acme", "helpdesk")
    app.tenants.delete("acme")
    assert app.catalog.query("SELECT * FROM brands") == []
