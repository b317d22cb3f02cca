"""Every registered VectorIndex kind passes the conformance suite of lorag.testing."""

import pytest

from lorag.testing.vector_index_conformance import VectorIndexConformance
from retrieval.vector_index import vector_indexes


@pytest.fixture(params=vector_indexes.names())
def index_kind(request) -> str:
    return request.param


class TestVectorIndexes(VectorIndexConformance):
    pass
