"""Chunking invariants: no chunk over the token limit, every character covered."""

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ingest.chunking import Chunker
from ingest.normalize import normalize_text
from retrieval.embedders import FakeEmbedder

WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta.", "eps,", "zeta!", "eta?", "theta",
                         "x", "supercalifragilistic", "42", "(a)", "naïve", "日本語"])
TEXTS = st.lists(st.lists(WORDS, min_size=1, max_size=40).map(" ".join), min_size=1,
                 max_size=12).map(lambda ps: "\n\n".join(ps))


def assert_invariants(chunker: Chunker, text: str) -> list:
    chunks = chunker.chunk(text)
    counts = chunker.embedder.count_tokens([c.text for c in chunks])
    assert max(counts) <= chunker.limit
    assert [c.tokens for c in chunks] == counts
    assert [c.position for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(text)
    previous_end = 0
    for chunk in chunks:
        assert chunk.text == text[chunk.start:chunk.end] and chunk.text.strip()
        assert chunk.start <= previous_end or not text[previous_end:chunk.start].strip()
        previous_end = chunk.end
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    missing = [ch for ch, ok in zip(text, covered) if not ok and not ch.isspace()]
    assert not missing, f"characters not in any chunk: {missing[:20]}"
    return chunks


@hsettings(max_examples=60, deadline=None)
@given(text=TEXTS, limit=st.integers(16, 40), overlap=st.integers(0, 12))
def test_chunks_respect_limit_and_cover_text(text, limit, overlap):
    chunker = Chunker(FakeEmbedder(max_tokens=1000), limit, overlap)
    assert_invariants(chunker, normalize_text(text))


def test_limit_is_capped_by_the_model():
    chunker = Chunker(FakeEmbedder(max_tokens=20), max_tokens=256, overlap_tokens=4)
    assert chunker.limit == 20
    assert_invariants(chunker, " ".join(["word"] * 300))


def test_prefers_paragraph_then_sentence_boundaries():
    first = " ".join(["one"] * 12) + "."
    second = " ".join(["two"] * 12) + "."
    chunker = Chunker(FakeEmbedder(), max_tokens=20, overlap_tokens=0)
    chunks = chunker.chunk(first + "\n\n" + second)
    assert [c.text for c in chunks] == [first, second]
    sentences = "Aa bb cc dd ee ff. Gg hh ii jj kk ll mm. Nn oo pp qq rr ss tt uu."
    chunks = Chunker(FakeEmbedder(), max_tokens=16, overlap_tokens=0).chunk(sentences)
    assert all(c.text.endswith(".") for c in chunks)


def test_overlap_repeats_the_end_of_the_previous_chunk():
    text = " ".join(f"w{i}" for i in range(100))
    chunks = Chunker(FakeEmbedder(), max_tokens=20, overlap_tokens=5).chunk(text)
    for before, after in zip(chunks, chunks[1:]):
        shared = before.text.split()[-5:]
        assert after.text.split()[:5] == shared


def test_short_text_is_one_chunk_and_empty_text_none():
    chunker = Chunker(FakeEmbedder(), 32, 8)
    assert [c.text for c in chunker.chunk("Just a few words.")] == ["Just a few words."]
    assert chunker.chunk("") == []


def test_fingerprint_changes_with_configuration():
    embedder = FakeEmbedder()
    assert Chunker(embedder, 32, 8).fingerprint != Chunker(embedder, 64, 8).fingerprint
    assert Chunker(embedder, 32, 8).fingerprint != Chunker(embedder, 32, 4).fingerprint


@pytest.fixture(scope="module")
def minilm():
    from retrieval.embedders import SentenceTransformerEmbedder
    from retrieval.settings import EmbedderSettings

    embedder = SentenceTransformerEmbedder(EmbedderSettings())
    embedder.warm_up()
    return embedder


def test_real_tokenizer_limit_and_coverage(minilm):
    assert minilm.max_tokens == 254  # max_seq_length 256 minus [CLS] and [SEP]
    text = normalize_text(
        ("Tokenizers split words like unbelievably into word pieces; the chunker must "
         "never cut inside one. Café, naïve, 東京 and emoji 🙂 all count.\n\n") * 40)
    chunker = Chunker(minilm, max_tokens=256, overlap_tokens=32)
    chunks = assert_invariants(chunker, text)
    assert chunker.limit == 254 and len(chunks) > 3
    small = assert_invariants(Chunker(minilm, max_tokens=24, overlap_tokens=6), text)
    assert len(small) > len(chunks)
