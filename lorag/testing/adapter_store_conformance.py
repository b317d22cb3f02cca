"""The conformance suite every AdapterStore passes (``adapters.store``).

Mix ``AdapterStoreConformance`` into a test class that provides two fixtures:

- ``adapter_store``: an empty store whose catalog holds tenants ``acme`` and ``globex``
  and validates against the tiny model (``lorag.testing.tiny_model``);
- ``lora_factory``: ``make(seed) -> Path`` of a valid LoRA folder for that model
  (``tests/fixtures_models.py``'s ``tiny_lora_factory``); the suite never changes it.

The suite uses only the store's public methods: register, resolve, resolve_target,
aliases, set_alias, remove_alias, add_lineage, get, exists, list, delete, delete_tenant
and on_unload (see tests/unit/test_conformance_adapter_stores.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lorag.core.errors import InvalidInput, NotFound


def versions(store, tenant: str, name: str | None = None) -> list[tuple[str, int]]:
    """(name, version) of every stored version, in the store's order."""
    return [(v.name, v.version) for v in store.list(tenant, name)]


class AdapterStoreConformance:
    """What every AdapterStore promises; see the module docstring for the fixtures."""

    @pytest.fixture
    def lora(self, lora_factory) -> Path:
        return lora_factory(seed=1)

    @pytest.fixture
    def heard(self, adapter_store) -> list:
        """The refs the store's unload listeners are called with."""
        calls: list = []
        adapter_store.on_unload(calls.append)
        return calls

    # -- register --------------------------------------------------------------------------

    def test_register_keeps_a_private_copy(self, adapter_store, lora, tmp_path):
        source = shutil.copytree(lora, tmp_path / "caller")
        stored = adapter_store.register("acme", "support", source)
        assert (stored.tenant_id, stored.name, stored.version) == ("acme", "support", 1)
        assert stored.path.is_dir() and not stored.path.is_relative_to(source)
        shutil.rmtree(source)  # the store never serves from the caller's folder
        ref = adapter_store.resolve("acme", "support")
        assert (ref.tenant_id, ref.name, ref.version, ref.int_id, ref.path) == \
            ("acme", "support", 1, stored.id, stored.path)
        assert adapter_store.exists("acme", "support")

    def test_versions_grow_and_resolve_gives_the_newest(self, adapter_store, lora):
        made = [adapter_store.register("acme", "support", lora) for _ in range(3)]
        assert [v.version for v in made] == [1, 2, 3]
        assert made[0].id < made[1].id < made[2].id
        assert adapter_store.resolve("acme", "support") == made[2].ref()
        assert adapter_store.get("acme", "support") == made[2]
        assert adapter_store.get("acme", "support", 1) == made[0]

    def test_numbers_and_ids_are_never_reused_after_deletes(self, adapter_store, lora):
        v1, v2 = (adapter_store.register("acme", "support", lora) for _ in range(2))
        adapter_store.delete("acme", "support", version=2)
        assert adapter_store.resolve("acme", "support").int_id == v1.id
        v3 = adapter_store.register("acme", "support", lora)
        assert v3.version == 3 and v3.id > v2.id and v3.path != v2.path
        adapter_store.delete("acme", "support")
        v4 = adapter_store.register("acme", "support", lora)
        assert v4.version == 4 and v4.id > v3.id

    def test_refused_input_stores_nothing(self, adapter_store, lora, tmp_path):
        with pytest.raises(InvalidInput) as err:
            adapter_store.register("acme", "../escape", lora)
        assert err.value.param == "adapter"
        with pytest.raises(NotFound) as err:
            adapter_store.register("acme", "support", tmp_path / "missing")
        assert err.value.param == "path"
        broken = shutil.copytree(lora, tmp_path / "broken")
        (broken / "adapter_config.json").unlink()
        with pytest.raises(InvalidInput) as err:
            adapter_store.register("acme", "support", broken)
        assert err.value.param.startswith("adapter")
        assert adapter_store.list("acme") == [] and not adapter_store.exists("acme", "support")
        assert adapter_store.register("acme", "support", lora).version == 1

    # -- read ------------------------------------------------------------------------------

    def test_list_is_ordered_by_name_then_version(self, adapter_store, lora):
        for name in ("support", "sales", "support"):
            adapter_store.register("acme", name, lora)
        assert versions(adapter_store, "acme") == [("sales", 1), ("support", 1), ("support", 2)]
        assert versions(adapter_store, "acme", "support") == [("support", 1), ("support", 2)]
        assert adapter_store.list("acme", "nothing") == [] and adapter_store.list("nobody") == []

    def test_unknown_tenant_name_or_version_is_not_found(self, adapter_store, lora):
        adapter_store.register("acme", "support", lora)
        with pytest.raises(NotFound) as err:
            adapter_store.register("nobody", "support", lora)
        assert err.value.param == "tenant"
        for tenant, name in (("acme", "other"), ("nobody", "support")):
            for call in (adapter_store.resolve, adapter_store.get, adapter_store.delete):
                with pytest.raises(NotFound):
                    call(tenant, name)
            assert not adapter_store.exists(tenant, name)
        for call in (adapter_store.get, adapter_store.delete):
            with pytest.raises(NotFound) as err:
                call("acme", "support", 7)
            assert err.value.param == "adapter"
        assert versions(adapter_store, "acme") == [("support", 1)]

    def test_tenants_are_isolated(self, adapter_store, lora):
        theirs = adapter_store.register("globex", "support", lora)
        ours = [adapter_store.register("acme", "support", lora) for _ in range(2)]
        assert theirs.version == 1 and ours[-1].version == 2
        adapter_store.delete("acme", "support")
        assert adapter_store.resolve("globex", "support") == theirs.ref()
        assert theirs.path.is_dir() and not any(v.path.exists() for v in ours)

    # -- delete ----------------------------------------------------------------------------

    def test_delete_one_version_or_every_version(self, adapter_store, lora):
        made = [adapter_store.register("acme", "support", lora) for _ in range(3)]
        assert adapter_store.delete("acme", "support", version=2) == [made[1]]
        assert not made[1].path.exists() and made[0].path.is_dir()
        assert [v.version for v in adapter_store.delete("acme", "support")] == [1, 3]
        assert not any(v.path.exists() for v in made)
        assert not adapter_store.exists("acme", "support")
        with pytest.raises(NotFound) as err:
            adapter_store.resolve("acme", "support")
        assert err.value.param == "adapter"

    def test_unload_listeners_hear_superseded_and_deleted_versions(self, adapter_store, lora,
                                                                    heard):
        v1 = adapter_store.register("acme", "support", lora)
        assert heard == []
        v2 = adapter_store.register("acme", "support", lora)
        assert heard == []  # v1 is still the stable
        adapter_store.set_alias("acme", "support", "stable", 2)
        adapter_store.register("acme", "support", lora)
        assert heard == [v1.ref()]  # superseded and no alias points at it
        adapter_store.delete("acme", "support", version=2)
        assert heard == [v1.ref(), v2.ref()]

    # -- aliases and targets ---------------------------------------------------------------

    def test_first_version_is_stable_and_registering_moves_no_alias(self, adapter_store, lora):
        v1 = adapter_store.register("acme", "support", lora)
        assert adapter_store.aliases("acme", "support") == {"stable": 1}
        v2 = adapter_store.register("acme", "support", lora)
        assert adapter_store.aliases("acme", "support") == {"stable": 1}
        assert adapter_store.resolve_target("acme", "support", "stable") == v1.ref()
        assert adapter_store.resolve_target("acme", "support", "latest") == v2.ref()
        assert adapter_store.resolve_target("acme", "support", "v2") == v2.ref()

    def test_set_and_remove_alias(self, adapter_store, lora):
        adapter_store.register("acme", "support", lora)
        v2 = adapter_store.register("acme", "support", lora)
        assert adapter_store.set_alias("acme", "support", "canary", 2) is None
        assert adapter_store.resolve_target("acme", "support", "canary") == v2.ref()
        assert adapter_store.set_alias("acme", "support", "stable", 2) == 1
        assert adapter_store.remove_alias("acme", "support", "canary") == 2
        with pytest.raises(NotFound) as err:
            adapter_store.resolve_target("acme", "support", "canary")
        assert err.value.code == "target_not_found"
        with pytest.raises(NotFound):
            adapter_store.set_alias("acme", "support", "canary", 9)
        with pytest.raises(InvalidInput) as err:
            adapter_store.set_alias("acme", "support", "v3", 1)
        assert err.value.param == "alias"

    def test_deleting_a_version_drops_its_aliases_never_moves_them(self, adapter_store, lora):
        adapter_store.register("acme", "support", lora)
        adapter_store.register("acme", "support", lora)
        adapter_store.delete("acme", "support", version=1)
        assert adapter_store.aliases("acme", "support") == {}
        with pytest.raises(NotFound) as err:
            adapter_store.resolve_target("acme", "support", "stable")
        assert err.value.code == "target_not_found"

    def test_aliases_and_pins_are_per_tenant(self, adapter_store, lora):
        adapter_store.register("acme", "support", lora)
        with pytest.raises(NotFound):
            adapter_store.resolve_target("globex", "support", "v1")
        assert adapter_store.aliases("globex", "support") == {}

    def test_lineage_records_weights_and_decisions(self, adapter_store, lora):
        stored = adapter_store.register("acme", "support", lora)
        assert len(stored.lineage["weights_sha256"]) == 64
        adapter_store.add_lineage("acme", "support", 1, gates={"alias": "stable"})
        adapter_store.add_lineage("acme", "support", 1, gates={"alias": "canary"})
        lineage = adapter_store.get("acme", "support", 1).lineage
        assert [g["alias"] for g in lineage["gates"]] == ["stable", "canary"]

    def test_a_failing_listener_does_not_undo_a_delete(self, adapter_store, lora, heard):
        def fail(ref):
            raise RuntimeError("engine is gone")

        adapter_store.on_unload(fail)
        stored = adapter_store.register("acme", "support", lora)
        adapter_store.delete("acme", "support")
        assert heard == [stored.ref()] and not adapter_store.exists("acme", "support")
        assert not stored.path.exists()

    def test_delete_tenant_removes_and_unloads_all_its_adapters(self, adapter_store, lora, heard):
        gone = [adapter_store.register("acme", name, lora)
                for name in ("support", "support", "sales")]
        kept = adapter_store.register("globex", "support", lora)
        heard.clear()  # version 2 of support superseded version 1
        adapter_store.delete_tenant("acme")
        assert adapter_store.list("acme") == [] and not any(v.path.exists() for v in gone)
        assert sorted(ref.int_id for ref in heard) == sorted(v.id for v in gone)
        assert adapter_store.list("globex") == [kept] and kept.path.is_dir()
        adapter_store.delete_tenant("acme")  # nothing left: no error
