"""The adapter store the container builds passes the AdapterStore conformance suite of
lorag.testing. There is one implementation (no registry of stores); built through
``Lorag(settings).adapters``, the suite runs whatever store the container chooses."""

import pytest

from lorag.testing.adapter_store_conformance import AdapterStoreConformance
from tests.adapter_fixtures import app  # noqa: F401  (tenants acme and globex, tiny model)


@pytest.fixture
def adapter_store(app):  # noqa: F811
    return app.adapters


@pytest.fixture
def lora_factory(tiny_lora_factory):
    return tiny_lora_factory


class TestContainerAdapterStore(AdapterStoreConformance):
    pass
