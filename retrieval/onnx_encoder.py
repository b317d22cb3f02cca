"""An ONNX embedder's document embedding without torch or sentence-transformers.

``OnnxEmbedder`` (retrieval/embedders.py) loads the sentence-transformers model for its
tokenizer, its pooling configuration and the export: importing torch and
sentence-transformers costs ~9 s of CPU, more than a short ingestion's embedding. A
process that only embeds documents (a Ray Data embedding actor, lorag/cluster/ingest.py)
needs none of that: ``OnnxEmbedder.encoding()`` packs what its ``embed_documents`` runs
(the exported graph's bytes, the model's fast tokenizer, the pooling mode) into an
``OnnxEncoding``, a plain value that pickles and travels (Ray's object store), and
``OnnxEncoder`` runs it with onnxruntime, ``tokenizers`` and numpy only: the same session
options, one text per session call, the same pooling and normalising, so its vectors are
``OnnxEmbedder``'s, bit for bit.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

# the tokenizer output feeding each graph input
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask",
                   "token_type_ids": "type_ids"}


@dataclass(frozen=True)
class OnnxEncoding:
    """What embedding documents with an exported model takes, as plain values.

    ``tokenizer``: the model's fast tokenizer (``tokenizers`` JSON), with no padding and
    truncation at the model's sequence length, as the model tokenizes one text.
    ``pooling``: mean, cls or max over the text's token embeddings (the model's pooling
    when it runs in numpy; other models have no ``OnnxEncoding``)."""

    name: str
    precision: str
    model: bytes
    tokenizer: str
    inputs: tuple[str, ...]
    pooling: str


def session(model: bytes | str):
    """An ONNX Runtime session of ``model`` (bytes or a path), as every embedder runs one."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # one thread per session call: a call's ops are too small to split across cores
    # without waiting on each other; texts run side by side instead
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def pool(tokens: np.ndarray, mode: str) -> np.ndarray:
    """Pooling of one text's (tokens, dimension) output, which has no padding."""
    return tokens[0] if mode == "cls" else tokens.max(axis=0) if mode == "max" \
        else tokens.mean(axis=0)


def normalised(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class OnnxEncoder:
    """Embeds documents as ``OnnxEmbedder`` does, from an ``OnnxEncoding``: ``threads``
    texts at a time, each on the single-threaded session."""

    def __init__(self, encoding: OnnxEncoding, threads: int):
        from tokenizers import Tokenizer

        self.name = encoding.name
        self.encoding = encoding
        self.threads = max(1, threads)
        self._tokenizer = Tokenizer.from_str(encoding.tokenizer)
        self._session = session(encoding.model)
        log.info("loaded embedder session name=%s precision=%s texts at once=%d",
                 encoding.name, encoding.precision, self.threads)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), dimension) float32 array of normalised vectors."""
        features = [feed(self._tokenizer.encode(text), self.encoding.inputs)
                    for text in texts]
        return side_by_side(self._vector, features, self.threads).astype(np.float32, copy=False)

    def _vector(self, features: dict[str, np.ndarray]) -> np.ndarray:
        (tokens,) = self._session.run(["token_embeddings"], features)
        return normalised(pool(tokens[0], self.encoding.pooling))


def side_by_side(vector: Callable[[Any], np.ndarray], features: list, threads: int) -> np.ndarray:
    """``vector`` of each text's features, ``threads`` texts at a time on threads this
    call starts (so they inherit the caller's scheduling priority), stacked in order."""
    workers = min(threads, len(features))
    if workers <= 1:
        return np.stack([vector(f) for f in features])
    with ThreadPoolExecutor(workers, thread_name_prefix="lorag-onnx") as pool_:
        return np.stack(list(pool_.map(vector, features)))


def feed(encoding, inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A ``tokenizers`` encoding of one text as the graph's (1, tokens) int64 inputs."""
    return {name: np.asarray([getattr(encoding, ENCODING_FIELDS[name])], dtype=np.int64)
            for name in inputs}
