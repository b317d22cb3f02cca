import pytest

from lorag.core.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound


def test_create_list_delete(app):
    app.tenants.create("acme", "Acme Inc")
    app.tenants.create("globex")
    assert [t.id for t in app.tenants.list()] == ["acme", "globex"]
    app.tenants.delete("acme")
    assert [t.id for t in app.tenants.list()] == ["globex"]
    with pytest.raises(NotFound):
        app.tenants.delete("acme")


@pytest.mark.parametrize("bad", ["", "Acme", "a b", "../x", "-lead", "x" * 64, "é"])
def test_bad_tenant_ids_are_refused_with_param(app, bad):
    with pytest.raises(InvalidInput) as err:
        app.tenants.create(bad)
    assert err.value.param == "tenant"


def test_duplicate_is_conflict(app):
    app.tenants.create("acme")
    with pytest.raises(Conflict):
        app.tenants.create("acme")


def test_keys_are_stored_hashed_and_authenticate(app):
    app.tenants.create("acme")
    key = app.tenants.issue_key("acme")
    stored = [r["key_hash"] for r in app.catalog.query("SELECT key_hash FROM api_keys")]
    assert key.secret not in stored and len(stored) == 1
    assert app.tenants.authenticate(key.secret) == "acme"
    for bad in (None, "", key.secret + "x", "lrg-nope"):
        with pytest.raises(AuthenticationFailed):
            app.tenants.authenticate(bad)


def test_deleting_tenant_revokes_its_keys(app):
    app.tenants.create("acme")
    key = app.tenants.issue_key("acme")
    app.tenants.delete("acme")
    with pytest.raises(AuthenticationFailed):
        app.tenants.authenticate(key.secret)


def test_revoke_key_of_other_tenant_is_not_found(app):
    app.tenants.create("acme")
    app.tenants.create("globex")
    key = app.tenants.issue_key("acme")
    with pytest.raises(NotFound):
        app.tenants.revoke_key("globex", key.id)
    assert app.tenants.authenticate(key.secret) == "acme"


def test_production_refuses_missing_admin_key(tmp_path):
    from lorag.app.settings import Settings

    with pytest.raises(ValueError, match="ADMIN_KEY"):
        Settings(data_dir=tmp_path, environment="production")
