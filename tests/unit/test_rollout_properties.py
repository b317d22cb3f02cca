"""Properties of targets, aliases and splits (hypothesis): over random sequences of
register, promote, pin, split, rollback and delete on the real adapter store (tiny
model), no brand ever serves a target it was not set to, and each target resolves to
exactly the version its alias / pin / ``latest`` names (or fails, never falls back);
split proportions over 100,000 keys are within the binomial 99% interval; the same key
always gets the same target."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from lorag.app.container import Lorag
from lorag.app.rollouts.routing import Role, pick
from lorag.core.brands import Brand, SplitArm
from lorag.core.errors import NotFound
from tests.adapter_fixtures import adapter_settings

ADAPTERS = ("pirate", "formal")
BRANDS = ("support", "sales")
SELECTORS = ("stable", "canary", "latest", "v1", "v2", "v3")
TARGETS = ["@base"] + [f"{a}@{s}" for a in ADAPTERS for s in SELECTORS]
KEYS = [f"user-{i}" for i in range(12)]


def expected_version(target: str, versions: dict, aliases: dict) -> int | None | NotFound:
    """The version the model says ``target`` serves (None: base; NotFound: nothing)."""
    if target == "@base":
        return None
    name, selector = target.split("@")
    have = versions[name]
    if selector == "latest":
        return max(have) if have else NotFound
    if selector.startswith("v"):
        return int(selector[1:]) if int(selector[1:]) in have else NotFound
    return aliases[name].get(selector, NotFound)


def make_machine(tiny_model: Path, lora: Path):
    class Rollouts(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.folder = Path(tempfile.mkdtemp(prefix="lorag-prop-"))
            self.app = Lorag(adapter_settings(self.folder / "data", tiny_model))
            self.app.tenants.create("acme")
            self.app.tenants.create("globex")
            self.versions = {a: set() for a in ADAPTERS}
            self.last = {a: 0 for a in ADAPTERS}
            self.aliases: dict[str, dict[str, int]] = {a: {} for a in ADAPTERS}
            self.target = {b: "@base" for b in BRANDS}
            self.split: dict[str, list[str]] = {b: [] for b in BRANDS}
            for brand in BRANDS:
                self.app.brands.create("acme", brand)
            self.app.adapters.register("globex", "pirate", lora)  # another tenant's, never served

        def teardown(self):
            self.app.close()
            shutil.rmtree(self.folder, ignore_errors=True)

        @rule(name=st.sampled_from(ADAPTERS))
        def register(self, name):
            version = self.app.adapters.register("acme", name, lora).version
            self.last[name] += 1
            assert version == self.last[name]
            self.versions[name].add(version)
            self.aliases[name].setdefault("stable", version)

        @rule(name=st.sampled_from(ADAPTERS), alias=st.sampled_from(["stable", "canary"]),
              version=st.integers(1, 4))
        def promote(self, name, alias, version):
            try:
                self.app.rollouts.promote("acme", name, version, alias=alias, force=True)
            except NotFound:
                assert version not in self.versions[name]
                return
            self.aliases[name][alias] = version

        @rule(brand=st.sampled_from(BRANDS), to=st.sampled_from(TARGETS))
        def pin(self, brand, to):
            try:
                self.app.brands.update("acme", brand, adapter=None if to == "@base" else to)
            except NotFound:
                assert not self._exists(to)
                return
            self.target[brand] = to

        @rule(brand=st.sampled_from(BRANDS),
              arms=st.lists(st.sampled_from(TARGETS), max_size=2, unique=True))
        def split(self, brand, arms):
            try:
                self.app.rollouts.set_split("acme", brand, [{"target": t, "percent": 30}
                                                            for t in arms])
            except NotFound:
                assert not all(self._exists(t) for t in arms)
                return
            self.split[brand] = list(arms)

        @rule(brand=st.sampled_from(BRANDS))
        def rollback(self, brand):
            self.app.rollouts.rollback("acme", brand)
            self.split[brand] = []

        @rule(name=st.sampled_from(ADAPTERS), version=st.one_of(st.none(), st.integers(1, 4)))
        def delete(self, name, version):
            try:
                self.app.adapters.delete("acme", name, version)
            except NotFound:
                assert not self.versions[name] or version not in self.versions[name]
                return
            gone = set(self.versions[name]) if version is None else {version}
            self.versions[name] -= gone
            self.aliases[name] = {a: v for a, v in self.aliases[name].items() if v not in gone}

        def _exists(self, target: str) -> bool:
            return target == "@base" or bool(self.app.adapters.exists("acme", target.split("@")[0]))

        @invariant()
        def every_brand_serves_what_it_was_set_to(self):
            for name in BRANDS:
                brand = self.app.brands.get("acme", name)
                allowed = {self.target[name], *self.split[name]}
                assert brand.target == self.target[name]
                assert [a.target for a in brand.split] == self.split[name]
                for key in KEYS:
                    chosen, _ = pick("acme", brand, f"key:{key}")
                    assert chosen in allowed
                    assert pick("acme", brand, f"key:{key}")[0] == chosen  # sticky
                    self._check_resolution(name, brand, chosen, key)

        def _check_resolution(self, name: str, brand: Brand, target: str, key: str) -> None:
            want = expected_version(target, self.versions, self.aliases)
            try:
                route = self.app.rollouts.route("acme", brand, key, [])
            except NotFound:
                assert want is NotFound, (name, target)
                return
            assert route.target == target
            got = None if route.adapter is None else route.adapter.version
            assert got == want, (name, target)
            if route.adapter is not None:
                assert route.adapter.tenant_id == "acme"

    return Rollouts


def test_no_brand_serves_a_target_it_was_not_set_to(tiny_model, tiny_lora_factory):
    machine = make_machine(tiny_model, tiny_lora_factory(seed=1))
    run_state_machine_as_test(machine, settings=settings(
        max_examples=40, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


def _brand(percents: list[float]) -> Brand:
    return Brand("acme", "support", "pirate", target="pirate@stable",
                 split=tuple(SplitArm(f"pirate@arm{i}", p) for i, p in enumerate(percents)))


@pytest.mark.parametrize("percents", [[5.0], [50.0], [1.0, 10.0, 30.0]])
def test_split_proportions_over_100000_keys_are_within_the_binomial_99_interval(percents):
    n = 100_000
    brand = _brand(percents)
    counts = Counter(pick("acme", brand, f"key:{i}")[0] for i in range(n))
    shares = {arm.target: arm.percent / 100 for arm in brand.split}
    shares[brand.target] = 1 - sum(shares.values())
    for target, p in shares.items():
        half_width = 2.5758 * math.sqrt(n * p * (1 - p))
        assert abs(counts[target] - n * p) <= half_width, (target, counts[target], n * p)


@given(key=st.text(max_size=50), percents=st.lists(st.floats(0.5, 30), max_size=3))
def test_the_same_key_always_gets_the_same_target(key, percents):
    brand = _brand(percents)
    first = pick("acme", brand, key)
    assert all(pick("acme", brand, key) == first for _ in range(3))
    assert first[1] in (Role.PRIMARY, Role.SPLIT)


def test_a_split_is_per_brand_and_tenant():
    """Different brands (or tenants) with the same split send a key to independent arms."""
    brand = _brand([50.0])
    other = Brand("acme", "sales", "pirate", target="pirate@stable", split=brand.split)
    same = sum(pick("acme", brand, f"k{i}")[0] == pick("acme", other, f"k{i}")[0]
               for i in range(2000))
    assert 850 < same < 1150  # about half: independent
