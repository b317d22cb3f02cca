"""The conformance suite every Embedder passes (``retrieval.embedders``).

Mix ``EmbedderConformance`` into a test class that provides two fixtures:

- ``embedder``: the Embedder under test (any scope; a module-scoped one saves loading a
  model per test);
- ``embedder_factory``: a callable building a fresh, not yet warmed instance with the
  same settings (for the cheap-constructor and same-name-same-space checks).

Iterate ``retrieval.embedders.embedders.names()`` so that a new backend runs the suite
without a line of test code (see tests/unit/test_conformance_embedders.py).
"""

from __future__ import annotations

import numpy as np

from retrieval.embedders import Embedder

TEXTS = (
    "The capital of France is Paris, a city on the Seine.",
    "Returns are accepted within thirty days of delivery.",
    "To reset the device, hold the power button for ten seconds.",
    "The battery lasts about eight hours on a full charge.",
    "Orders ship within two business days.",
)
#: Texts an embedder must survive: empty, blank, symbols only, non-Latin, emoji.
ODD_TEXTS = ("", "   ", "?!", "Größe ünd Maß", "東京は日本の首都です", "🎉🎉")

NORM_TOLERANCE = 1e-3
#: Least cosine between a text's vector in a batch and alone: padding and reduced
#: precision may move a vector a little, never to another place.
SAME_VECTOR = 0.999


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays."""
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_unit_rows(vectors: np.ndarray, rows: int, dimension: int) -> None:
    assert vectors.shape == (rows, dimension) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=NORM_TOLERANCE)


class EmbedderConformance:
    """What every Embedder promises; see the module docstring for the fixtures."""

    # -- what it is ------------------------------------------------------------------------

    def test_is_an_embedder_with_a_name_and_sizes(self, embedder):
        assert isinstance(embedder, Embedder)
        assert isinstance(embedder.name, str) and embedder.name
        assert isinstance(embedder.dimension, int) and embedder.dimension > 0
        assert isinstance(embedder.max_tokens, int) and embedder.max_tokens > 0

    def test_warm_up_twice_and_the_same_settings_give_the_same_space(self, embedder,
                                                                     embedder_factory):
        fresh = embedder_factory()
        fresh.warm_up()
        fresh.warm_up()
        assert (fresh.name, fresh.dimension) == (embedder.name, embedder.dimension)
        assert np.allclose(fresh.embed_documents(list(TEXTS)),
                           embedder.embed_documents(list(TEXTS)), atol=1e-5)

    # -- vectors ---------------------------------------------------------------------------

    def test_documents_are_unit_float32_rows(self, embedder):
        assert_unit_rows(embedder.embed_documents(list(TEXTS)), len(TEXTS), embedder.dimension)

    def test_query_is_a_unit_float32_vector(self, embedder):
        vector = embedder.embed_query(TEXTS[0])
        assert vector.shape == (embedder.dimension,)
        assert_unit_rows(vector.reshape(1, -1), 1, embedder.dimension)

    def test_no_texts_give_no_rows(self, embedder):
        vectors = embedder.embed_documents([])
        assert vectors.shape == (0, embedder.dimension) and vectors.dtype == np.float32

    def test_odd_and_overlong_texts_embed(self, embedder):
        overlong = "word " * (2 * embedder.max_tokens)
        texts = [*ODD_TEXTS, overlong]
        assert_unit_rows(embedder.embed_documents(texts), len(texts), embedder.dimension)
        for text in ("", overlong):
            assert_unit_rows(embedder.embed_query(text).reshape(1, -1), 1, embedder.dimension)

    def test_same_input_same_vectors(self, embedder):
        assert np.allclose(embedder.embed_documents(list(TEXTS)),
                           embedder.embed_documents(list(TEXTS)), rtol=0, atol=1e-6)
        assert np.allclose(embedder.embed_query(TEXTS[1]), embedder.embed_query(TEXTS[1]),
                           rtol=0, atol=1e-6)

    def test_a_batch_equals_its_texts_one_by_one_in_order(self, embedder):
        texts = [*TEXTS, *ODD_TEXTS]
        batch = embedder.embed_documents(texts)
        alone = np.stack([embedder.embed_documents([text])[0] for text in texts])
        backwards = embedder.embed_documents(texts[::-1])[::-1]
        assert cosines(batch, alone).min() >= SAME_VECTOR
        assert cosines(batch, backwards).min() >= SAME_VECTOR

    # -- queries against documents ---------------------------------------------------------

    def test_queries_and_documents_share_one_space(self, embedder):
        documents = embedder.embed_documents(list(TEXTS))
        for row, text in enumerate(TEXTS):
            query = embedder.embed_query(text)
            assert cosines(query.reshape(1, -1), documents[row:row + 1])[0] >= SAME_VECTOR
            assert int(np.argmax(documents @ query)) == row

    def test_a_query_sharing_words_finds_its_document(self, embedder):
        documents = embedder.embed_documents(list(TEXTS))
        for row, query in ((0, "capital of France"), (3, "battery hours"),
                           (2, "reset the device")):
            assert int(np.argmax(documents @ embedder.embed_query(query))) == row

    # -- tokens ----------------------------------------------------------------------------

    def test_counts_match_spans_and_keep_the_order(self, embedder):
        texts = [*TEXTS, *ODD_TEXTS]
        counts = embedder.count_tokens(texts)
        assert counts == [len(embedder.token_spans(text)) for text in texts]
        assert embedder.count_tokens([]) == [] and embedder.count_tokens([""]) == [0]
        assert embedder.count_tokens(texts[::-1]) == counts[::-1]

    def test_spans_are_ordered_slices_of_the_text(self, embedder):
        for text in (*TEXTS, *ODD_TEXTS):
            spans = embedder.token_spans(text)
            for start, end in spans:
                assert 0 <= start < end <= len(text)
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))

    def test_counting_does_not_truncate(self, embedder):
        overlong = "word " * (2 * embedder.max_tokens)
        assert embedder.count_tokens([overlong])[0] > embedder.max_tokens
        assert len(embedder.token_spans(overlong)) > embedder.max_tokens
