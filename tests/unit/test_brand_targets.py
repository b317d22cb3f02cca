"""Brand targets, splits and shadow as BrandStore validates and records them."""

import pytest

from lorag.core.errors import InvalidInput, NotFound
from tests.adapter_fixtures import app, lora  # noqa: F401


@pytest.fixture
def voice(app, lora):
    app.adapters.register("acme", "voice", lora)
    return "voice"


@pytest.mark.parametrize("given,target", [("voice", "voice@stable"), ("voice@v1", "voice@v1"),
                                          ("voice@latest", "voice@latest"),
                                          ("voice@canary", "voice@canary"), (None, "@base")])
def test_targets_are_normalised(app, voice, given, target):
    brand = app.brands.create("acme", "helpdesk", adapter=given)
    assert brand.target == target and app.brands.get("acme", "helpdesk").target == target
    assert brand.adapter_name == (None if given is None else "voice")


@pytest.mark.parametrize("given,param", [("voice@", "adapter"), ("voice@v0", "adapter"),
                                         ("voice@Bad", "adapter"), ("@v1", "adapter"),
                                         ("voice@a@b", "adapter")])
def test_malformed_targets_are_400_naming_the_field(app, voice, given, param):
    with pytest.raises(InvalidInput) as err:
        app.brands.create("acme", "helpdesk", adapter=given)
    assert err.value.param == param


@pytest.mark.parametrize("split,param", [
    ([{"target": "voice@canary", "percent": 100}], "split[0].percent"),
    ([{"target": "voice@canary", "percent": 60}, {"target": "voice@v1", "percent": 40}], "split"),
    ([{"target": "voice@canary", "percent": 5}, {"target": "voice@canary", "percent": 5}], "split"),
    ([{"target": "voice@canary"}], "split[0]"),
    ([{"target": "nope@stable", "percent": 5}], "split[0].target"),
    ("voice@canary", "split")])
def test_bad_splits_are_refused_naming_the_field(app, voice, split, param):
    app.brands.create("acme", "helpdesk", adapter="voice")
    with pytest.raises((InvalidInput, NotFound)) as err:
        app.brands.update("acme", "helpdesk", split=split)
    assert err.value.param == param
    assert app.brands.get("acme", "helpdesk").split == ()


def test_shadow_and_store_round_trip_and_every_change_is_audited(app, voice):
    app.brands.create("acme", "helpdesk", adapter="voice", store=True)
    app.brands.update("acme", "helpdesk", shadow={"target": "voice@v1", "rate": 0.25},
                      split=[{"target": "@base", "percent": 10}])
    brand = app.brands.get("acme", "helpdesk")
    assert brand.store is True and brand.shadow.rate == 0.25 and brand.split[0].target == "@base"
    with pytest.raises(InvalidInput) as err:
        app.brands.update("acme", "helpdesk", shadow={"target": "voice@v1", "rate": 0})
    assert err.value.param == "shadow.rate"
    app.brands.delete("acme", "helpdesk")
    records = [r for r in app.audit.list("acme") if r.subject == "brand:helpdesk"]
    assert [r.action for r in records] == ["brand.create", "brand.update", "brand.delete"]
    assert records[1].before["shadow"] is None and records[1].after["shadow"]["rate"] == 0.25
    assert records[2].after is None and app.audit.verify().ok
