"""Every registered Embedder passes the conformance suite of lorag.testing (the real
sentence-transformers one on the packaged all-MiniLM-L6-v2: it warms up in well under a
second once torch is imported)."""

import pytest

from lorag.testing.embedder_conformance import EmbedderConformance
from retrieval.embedders import embedders
from retrieval.settings import EmbedderSettings


@pytest.fixture(scope="module", params=embedders.names())
def embedder_factory(request):
    settings = EmbedderSettings(backend=request.param)
    return lambda: embedders.get(request.param)(settings)


@pytest.fixture(scope="module")
def embedder(embedder_factory):
    embedder = embedder_factory()
    embedder.warm_up()
    return embedder


class TestEmbedders(EmbedderConformance):
    pass
