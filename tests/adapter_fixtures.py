"""Fixtures of the adapter tests: a container serving the tiny model, a caller's adapter.

Import them into a test module: ``from tests.adapter_fixtures import app, lora  # noqa: F401``
(``app`` there overrides the plain one of conftest.py).
"""

from __future__ import annotations

import shutil

import pytest

from adapters.settings import AdapterSettings, EngineSettings
from lorag.testing.tiny_model import build_tiny_model, make_lora
from lorag.app.settings import Settings
from lorag.app.container import Lorag


def adapter_settings(data_dir, model, **adapters) -> Settings:
    return Settings(data_dir=data_dir, environment="test",
                    engine=EngineSettings(model=str(model), max_lora_rank=16),
                    adapters=AdapterSettings(**adapters))


@pytest.fixture
def app(tmp_path, tiny_model):
    """A container on the tiny model with tenants ``acme`` and ``globex``."""
    lorag = Lorag(adapter_settings(tmp_path / "data", tiny_model, max_unpacked_bytes=16 * 2**20))
    lorag.tenants.create("acme")
    lorag.tenants.create("globex")
    yield lorag
    lorag.close()


@pytest.fixture
def lora(tiny_lora_factory, tmp_path):
    """A caller's copy of a valid adapter (free to change or delete)."""
    return shutil.copytree(tiny_lora_factory(seed=1), tmp_path / "caller-lora")


@pytest.fixture(scope="session")
def other_base_lora(tmp_path_factory):
    """A valid adapter for another tiny model (hidden 96): incompatible with ``tiny_model``."""
    root = tmp_path_factory.mktemp("other-base")
    base = build_tiny_model(root / "model", hidden_size=96)
    return make_lora(base, root / "lora", seed=5)
