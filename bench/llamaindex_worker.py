"""The LlamaIndex baseline, run by ``.bench-venv/bin/python`` (never imports lorag).

A small server on stdin/stdout, one JSON object per line each way, so the driver can
alternate rounds of lorag and LlamaIndex on the same inputs while only one of them
runs at a time (two cores: running both at once would measure the contention).

Requests (``op``):
Every request may set ``torch_threads`` and ``faiss_threads`` (the driver sets its own
side the same way).

- ``ingest``: {docs_dir, model_path, chunk_size, chunk_overlap, batch_size, precision?}
  -> an IngestionPipeline [SentenceSplitter, HuggingFaceEmbedding] into a
  FaissVectorStore (IndexFlatIP), the way its documentation builds one; model load is
  not timed. ``precision`` "bfloat16" runs it under bf16 autocast (default float32).
- ``load_index``: {vectors (.npy), texts (.jsonl, one {"id", "text"} a line),
  model_path} -> a VectorStoreIndex over a FaissVectorStore holding exactly those
  vectors (nothing re-embedded), and its retriever.
- ``query``: {queries, k} -> seconds per ``retriever.retrieve(query)`` and the ids found.
- ``quit``.

Replies: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STATE: dict = {}


def _threads(req: dict) -> None:
    """torch and FAISS threads as the driver asks: both sides of a comparison use the same."""
    import faiss
    import torch

    if "torch_threads" in req:
        torch.set_num_threads(int(req["torch_threads"]))
    if "faiss_threads" in req:
        faiss.omp_set_num_threads(int(req["faiss_threads"]))


def _embed_model(model_path: str, batch_size: int):
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    key = (model_path, batch_size)
    if STATE.get("embed_key") != key:
        STATE["embed"] = HuggingFaceEmbedding(model_name=model_path, embed_batch_size=batch_size,
                                              device="cpu", normalize=True)
        STATE["embed_key"] = key
    return STATE["embed"]


def _token_counter(model_path: str):
    """The embedding model's own tokenizer (the default, tiktoken, needs a download)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def ingest(req: dict) -> dict:
    import faiss
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.faiss import FaissVectorStore

    _threads(req)
    embed = _embed_model(req["model_path"], req["batch_size"])
    dimension = len(embed.get_text_embedding("warm up"))
    splitter = SentenceSplitter(chunk_size=req["chunk_size"], chunk_overlap=req["chunk_overlap"],
                                tokenizer=_token_counter(req["model_path"]))
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(dimension))
    pipeline = IngestionPipeline(transformations=[splitter, embed], vector_store=store)
    import torch

    started = time.perf_counter()
    documents = SimpleDirectoryReader(req["docs_dir"], recursive=True).load_data()
    loaded = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16,
                        enabled=req.get("precision", "float32") == "bfloat16"):
        nodes = pipeline.run(documents=documents)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "load_seconds": loaded - started, "documents": len(documents),
            "torch_threads": _torch_threads(),
            "chunks": len(nodes), "stored": int(store.client.ntotal),
            "chunk_tokens_mean": _mean_tokens(nodes, req["model_path"])}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _mean_tokens(nodes, model_path: str) -> float:
    from llama_index.core.schema import MetadataMode

    count = _token_counter(model_path)
    sample = nodes[:: max(1, len(nodes) // 200)]
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in sample]
    return sum(len(count(t)) for t in texts) / max(1, len(texts))


def load_index(req: dict) -> dict:
    import faiss
    import numpy as np
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.faiss import FaissVectorStore

    _threads(req)
    vectors = np.load(req["vectors"])
    nodes = []
    with open(req["texts"]) as lines:
        for line, vector in zip(lines, vectors):
            row = json.loads(line)
            nodes.append(TextNode(id_=str(row["id"]), text=row["text"], embedding=vector.tolist()))
    embed = _embed_model(req["model_path"], req.get("batch_size", 64))
    started = time.perf_counter()
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(vectors.shape[1]))
    context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=context, embed_model=embed)
    STATE["retriever"] = index.as_retriever(similarity_top_k=req.get("k", 5))
    STATE["retriever"].retrieve("warm up")
    return {"seconds": time.perf_counter() - started, "nodes": len(nodes),
            "torch_threads": _torch_threads()}


def query(req: dict) -> dict:
    retriever = STATE["retriever"]
    retriever.similarity_top_k = req.get("k", retriever.similarity_top_k)
    seconds, ids = [], []
    for text in req["queries"]:
        started = time.perf_counter()
        found = retriever.retrieve(text)
        seconds.append(time.perf_counter() - started)
        ids.append([n.node.node_id for n in found])
    return {"seconds": seconds, "ids": ids}


OPS = {"ingest": ingest, "load_index": load_index, "query": query}


def serve() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries that print must not corrupt the replies
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            reply = {"ok": True, **OPS[req["op"]](req)}
        except Exception as exc:
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
