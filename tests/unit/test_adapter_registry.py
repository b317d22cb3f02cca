"""AdapterStore: validated copies, versions with never-reused ids, resolve, delete."""

import shutil

import pytest

from adapters.store import LocalAdapterStore
from lorag.app.container import Lorag
from lorag.core.errors import InvalidInput, NotFound, UnknownName
from tests.adapter_fixtures import adapter_settings, app, lora  # noqa: F401


def test_the_store_is_chosen_by_name_and_an_unknown_name_lists_the_valid_ones(app, tmp_path,
                                                                             tiny_model):
    assert isinstance(app.adapters, LocalAdapterStore)  # adapters.store = "local"
    other = Lorag(adapter_settings(tmp_path / "other", tiny_model, store="s3"))
    try:
        with pytest.raises(UnknownName) as err:
            other.adapters
        assert err.value.param == "adapters.store" and "valid: local" in err.value.message
    finally:
        other.close()


def test_register_copies_into_the_store(app, lora):
    version = app.adapters.register("acme", "support", lora)
    assert (version.version, version.rank, version.targets) == (1, 8, ("q_proj", "v_proj"))
    assert version.path == app.layout.adapter_dir("acme", "support", 1)
    assert (version.path / "adapter_model.safetensors").is_file()
    shutil.rmtree(lora)  # lorag never serves from the caller's path
    ref = app.adapters.resolve("acme", "support")
    assert (ref.int_id, ref.path, ref.version) == (version.id, version.path, 1)


def test_versions_get_new_ids_and_numbers_are_never_reused(app, lora):
    v1 = app.adapters.register("acme", "support", lora)
    v2 = app.adapters.register("acme", "support", lora)
    assert (v2.version, app.adapters.resolve("acme", "support").int_id) == (2, v2.id)
    assert v2.id > v1.id
    app.adapters.delete("acme", "support", version=2)
    assert app.adapters.resolve("acme", "support").int_id == v1.id  # falls back to v1
    v3 = app.adapters.register("acme", "support", lora)
    assert v3.version == 3 and v3.id not in (v1.id, v2.id)
    assert [v.version for v in app.adapters.list("acme")] == [1, 3]


def test_delete_all_versions_then_resolve_is_not_found(app, lora):
    v1 = app.adapters.register("acme", "support", lora)
    app.adapters.register("acme", "support", lora)
    removed = app.adapters.delete("acme", "support")
    assert [v.version for v in removed] == [1, 2]
    assert not v1.path.exists()
    with pytest.raises(NotFound) as err:
        app.adapters.resolve("acme", "support")
    assert err.value.param == "adapter"
    with pytest.raises(NotFound):
        app.adapters.delete("acme", "support")


def test_adapters_are_per_tenant(app, lora):
    app.adapters.register("acme", "support", lora)
    with pytest.raises(NotFound):
        app.adapters.resolve("globex", "support")
    with pytest.raises(NotFound):
        app.adapters.delete("globex", "support")
    assert app.adapters.list("globex") == []


def test_unload_listener_hears_deletes_and_superseded_versions(app, lora):
    heard = []
    app.adapters.on_unload(heard.append)
    v1 = app.adapters.register("acme", "support", lora)
    assert heard == []
    v2 = app.adapters.register("acme", "support", lora)
    assert heard == []  # v1 is the stable: brands still serve it
    app.adapters.set_alias("acme", "support", "stable", 2)
    app.adapters.register("acme", "support", lora)
    assert [r.int_id for r in heard] == [v1.id]  # no alias points at v1 any more
    app.adapters.delete("acme", "support", version=2)
    assert [r.int_id for r in heard] == [v1.id, v2.id]


def test_unknown_tenant_and_bad_names(app, lora, tmp_path):
    with pytest.raises(NotFound) as err:
        app.adapters.register("nobody", "support", lora)
    assert err.value.param == "tenant"
    with pytest.raises(InvalidInput) as err:
        app.adapters.register("acme", "../escape", lora)
    assert err.value.param == "adapter"
    with pytest.raises(NotFound) as err:
        app.adapters.register("acme", "support", tmp_path / "missing")
    assert err.value.param == "path"


def test_tenant_delete_removes_its_adapters_and_unloads_them(app, lora):
    heard = []
    app.adapters.on_unload(heard.append)
    versions = [app.adapters.register("acme", name, lora) for name in ("support", "support", "sales")]
    kept = app.adapters.register("globex", "support", lora)
    heard.clear()  # version 2 superseded version 1: heard already
    app.tenants.delete("acme")
    assert not any(v.path.exists() for v in versions) and kept.path.exists()
    assert sorted(r.int_id for r in heard) == sorted(v.id for v in versions)
    assert [r["id"] for r in app.catalog.query("SELECT id FROM adapters")] == [kept.id]
