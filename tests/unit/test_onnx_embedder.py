"""The ONNX Runtime embedder (``retrieval.embedder.backend=onnx``) beyond the conformance
suite (which test_conformance_embedders runs on it): the export is made once and found
again by the model folder's content hash, its float32 vectors are the PyTorch model's,
and ``onnx_precision=auto`` follows the CPU's VNNI flag."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lorag.testing.embedder_conformance import TEXTS, cosines
from retrieval import embedders as embedders_module
from retrieval import onnx_export
from retrieval.embedders import (TOKENIZER_PROBES, OnnxEmbedder, SentenceTransformerEmbedder,
                                 get_embedder)
from retrieval.onnx_encoder import OnnxEncoder
from retrieval.settings import EmbedderSettings


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def settings(cache):
    return EmbedderSettings(backend="onnx", onnx_precision="float32", onnx_cache_dir=str(cache))


@pytest.fixture(scope="module")
def exported(settings):
    embedder = OnnxEmbedder(settings)
    embedder.warm_up()
    return embedder


def test_the_export_is_cached_by_the_model_folder_s_content(exported, settings, cache):
    (folder,) = [p for p in cache.iterdir()]  # no temporary folder left behind
    assert folder.name.startswith(onnx_export.model_digest(exported.path)[:20])
    assert folder.name.split("-")[1] == "float32"
    made = (folder / "model.onnx").stat().st_mtime_ns
    again = OnnxEmbedder(settings)
    again.warm_up()
    assert [p for p in cache.iterdir()] == [folder]
    assert (folder / "model.onnx").stat().st_mtime_ns == made  # found, not exported again
    assert np.allclose(again.embed_documents(list(TEXTS)), exported.embed_documents(list(TEXTS)))


def test_float32_vectors_are_the_pytorch_model_s(exported):
    torch_side = get_embedder(EmbedderSettings(backend="sentence-transformers",
                                               document_precision="float32"))
    assert isinstance(torch_side, SentenceTransformerEmbedder)
    assert exported.name == torch_side.name and exported.dimension == torch_side.dimension
    assert cosines(exported.embed_documents(list(TEXTS)),
                   torch_side.embed_documents(list(TEXTS))).min() >= 0.9999
    assert exported.count_tokens(list(TEXTS)) == torch_side.count_tokens(list(TEXTS))


@pytest.mark.parametrize("vnni, precision", [(True, "int8"), (False, "float32")])
def test_auto_precision_is_int8_only_where_the_cpu_has_vnni(monkeypatch, vnni, precision):
    monkeypatch.setattr(embedders_module, "cpu_has_vnni", lambda: vnni)
    embedder = OnnxEmbedder(EmbedderSettings(backend="onnx"))  # cheap: nothing loaded
    assert embedder.onnx_precision == precision == embedder.document_precision
    chosen = OnnxEmbedder(EmbedderSettings(backend="onnx", onnx_precision="float32"))
    assert chosen.onnx_precision == "float32"


def test_a_cache_folder_that_cannot_be_written_is_an_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    embedder = OnnxEmbedder(EmbedderSettings(backend="onnx", onnx_precision="float32",
                                             onnx_cache_dir=str(blocked / "onnx")))
    with pytest.raises(OSError):
        embedder.warm_up()


def test_pooling_in_numpy_equals_the_model_s_own_modules(exported):
    assert exported._numpy_pooling == "mean"  # all-MiniLM-L6-v2: Pooling(mean), Normalize
    fast = exported.embed_documents(list(TEXTS))
    exported.__dict__["_numpy_pooling"] = None  # as for a model with other modules
    try:
        assert cosines(exported.embed_documents(list(TEXTS)), fast).min() >= 0.99999
    finally:
        del exported.__dict__["_numpy_pooling"]


@pytest.mark.parametrize("flags, precision", [("avx512f avx512_bf16 avx512_vnni", "float32"),
                                               ("avx512_bf16 amx_bf16 amx_tile", "bfloat16"),
                                               ("sse4_2 avx2", "float32")])
def test_auto_document_precision_is_bf16_only_where_the_cpu_has_amx(monkeypatch, tmp_path,
                                                                    flags, precision):
    """AVX512-BF16 without AMX measured bf16 slower than float32: auto keeps float32."""
    from retrieval import embedders

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    monkeypatch.setattr(embedders, "CPUINFO", cpuinfo)
    embedder = SentenceTransformerEmbedder(EmbedderSettings())  # cheap: nothing loaded
    assert embedder.document_precision == precision
    assert embedders.cpu_has_native_bf16() == ("bf16" in flags)


def test_a_bert_encoder_is_exported_with_its_attention_fused(exported, cache):
    """MiniLM is a BERT: each layer's attention is one fused op, not masks and Where ops."""
    import onnx

    (folder,) = [p for p in cache.iterdir()]
    ops = [node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node]
    layers = exported.model[0].auto_model.config.num_hidden_layers
    assert ops.count("Attention") == layers and "Where" not in ops
    assert exported.model[0].auto_model.config._attn_implementation != "eager"  # put back


def test_texts_embedded_side_by_side_equal_each_text_alone(exported):
    texts = [f"{text} ({n})" for n, text in enumerate(TEXTS * 3)]
    alone = np.stack([exported.embed_query(text) for text in texts])
    assert exported._threads > 1 or pytest.skip("one torch thread: nothing side by side")
    assert np.array_equal(exported.embed_documents(texts), alone)


@pytest.mark.parametrize("vnni, device, backend", [(True, "cpu", OnnxEmbedder),
                                                    (False, "cpu", SentenceTransformerEmbedder),
                                                    (True, "cuda", SentenceTransformerEmbedder)])
def test_the_auto_backend_is_onnx_only_on_a_cpu_with_vnni(monkeypatch, vnni, device, backend):
    monkeypatch.setattr(embedders_module, "cpu_has_vnni", lambda: vnni)
    monkeypatch.setattr(embedders_module, "_cache", {})  # built, not loaded: cheap
    assert type(get_embedder(EmbedderSettings(device=device))) is backend
    explicit = EmbedderSettings(backend="sentence-transformers", device=device)
    assert type(get_embedder(explicit)) is SentenceTransformerEmbedder


# a process that embeds from a pickled OnnxEncoding, as a Ray Data embedding actor does
WITHOUT_TORCH = """
import pickle, sys
import numpy as np
from retrieval.onnx_encoder import OnnxEncoder
encoding, texts = pickle.load(open(sys.argv[1], "rb"))
np.save(sys.argv[2], OnnxEncoder(encoding, 2).embed_documents(texts))
print(sorted({"torch", "sentence_transformers", "transformers"} & set(sys.modules)))
"""


def test_the_encoding_embeds_as_the_embedder_does_in_a_process_without_torch(exported,
                                                                             tmp_path):
    """OnnxEmbedder.encoding(): what a Ray Data embedding actor loads (lorag/cluster/ingest.py)
    instead of torch and sentence-transformers; its vectors are the embedder's, bit for bit,
    on texts the tokenizer must treat alike (spaces, case, CJK, an empty and a too long one)."""
    encoding = exported.encoding()
    assert (encoding.name, encoding.precision, encoding.pooling) == (exported.name, "float32",
                                                                     "mean")
    texts = [*TEXTS, *TOKENIZER_PROBES, "word " * 2 * exported.max_tokens]
    expected = exported.embed_documents(texts)
    assert np.array_equal(OnnxEncoder(encoding, 2).embed_documents(texts), expected)
    (tmp_path / "encoding.pkl").write_bytes(pickle.dumps((encoding, texts)))
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path / "encoding.pkl"),
                          str(tmp_path / "vectors.npy")], cwd=root, env={"PYTHONPATH": str(root)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["[]"]  # none of torch, transformers, sentence-transformers
    assert np.array_equal(np.load(tmp_path / "vectors.npy"), expected)


def test_a_model_whose_pooling_needs_torch_has_no_encoding(exported):
    exported.__dict__["_numpy_pooling"] = None  # as for a model with a Dense layer
    try:
        assert exported.encoding() is None
    finally:
        del exported.__dict__["_numpy_pooling"]
