"""Ray Data embedding for ingestion (``lorag ingest --ray``, and ingestion jobs of the
Ray ingress).

Loading, normalising, PII screening, hashing and chunking run as in local ingestion
(``ingest/service.py``, unchanged); only the embedding of each commit group goes to the
cluster: one Ray Data ``map_batches`` run over an actor pool whose callable class loads the
embedder once per actor. Each run starts its actors afresh (a worker process that
imports Ray Data, then loads the embedder: with the ONNX embedder the driver's
``OnnxEncoding``, ~2 s a run on 2 cores; torch and sentence-transformers otherwise, ~9 s
more), so a commit group is embedded by one run: the fair
scheduler's embedding slice (``limits.embedding_slice``, 64 chunks for local ingestion)
is the whole commit group here. The group's vectors come back in row order and the tenant
store's single writer commits them in one transaction, so the hash skip (unchanged
documents embed nothing), crash safety (a group is committed whole or not at all) and
per-document failures are those of local ingestion. Ray Data restarts an embedding
actor that died and retries its batches (its defaults for actor pools), so a killed
worker delays a group and the run completes.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import ray

from adapters.engines.protocol import InferenceEngine
from lorag.app.container import Lorag
from lorag.app.settings import RaySettings, Settings
from retrieval.embedders import OnnxEmbedder, get_embedder
from retrieval.settings import EmbedderSettings

log = logging.getLogger(__name__)

# An embedding slice larger than any commit group (which may pass ingest_commit_chunks by
# its last document's chunks): the group goes to one Ray Data run, whole.
UNSLICED = 2**40


class EmbedBatch:
    """The map_batches callable: one embedder per actor, loaded when the actor starts.

    ``encoding``: the driver's ``OnnxEncoding`` in the object store, which the actor runs
    with onnxruntime and tokenizers only (well under a second to start, on any node: the
    graph's bytes come through the object store, no shared filesystem or export cache
    needed). None: the actor builds the embedder of ``settings`` (torch and
    sentence-transformers, ~9 s of CPU to import)."""

    def __init__(self, settings: EmbedderSettings, encoding: ray.ObjectRef | None,
                 threads: int):
        if encoding is not None:
            from retrieval.onnx_encoder import OnnxEncoder

            self.embedder = OnnxEncoder(ray.get(encoding), threads)
            return
        import torch

        torch.set_num_threads(threads)
        self.embedder = get_embedder(settings)
        self.embedder.warm_up()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed_documents([str(text) for text in batch["text"]])
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32)}


class RayDataEmbedding:
    """``EmbedDocuments`` on a Ray Data actor pool (``ray.ingest_*`` settings)."""

    def __init__(self, embedder: EmbedderSettings, settings: RaySettings):
        self.embedder = embedder
        self.settings = settings
        self.runs = 0  # Ray Data runs started (each starts the actor pool)
        self._encoding: tuple[str, ray.ObjectRef | None] | None = None  # (job id, ref)

    def __call__(self, texts: list[str]) -> np.ndarray:
        import ray.data

        started = time.perf_counter()
        self.runs += 1
        s = self.settings
        rows = ray.data.from_items([{"row": i, "text": text} for i, text in enumerate(texts)])
        embedded = rows.map_batches(
            EmbedBatch, fn_constructor_args=(self.embedder, self.encoding(),
                                             max(1, int(s.ingest_embed_num_cpus))),
            batch_size=s.ingest_batch_size, num_cpus=s.ingest_embed_num_cpus,
            compute=ray.data.ActorPoolStrategy(size=s.ingest_embed_actors),
            batch_format="numpy")
        vectors = np.empty((len(texts), 0), dtype=np.float32)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            if vectors.shape[1] == 0:
                vectors = np.empty((len(texts), batch["vector"].shape[1]), dtype=np.float32)
            vectors[batch["row"]] = batch["vector"]
        log.info("Ray Data embedded %d chunks in %.1f s", len(texts),
                 time.perf_counter() - started)
        return vectors

    def encoding(self) -> ray.ObjectRef | None:
        """This process' ONNX embedder as an ``OnnxEncoding`` in the object store, put once
        per Ray job (None: not an ONNX embedder, or none torch-free; the actors load the
        embedder). The actors' vectors are then this process' own: same graph (the int8 or
        float32 precision chosen here), same tokenizer, same pooling."""
        job = ray.get_runtime_context().get_job_id()
        if self._encoding is None or self._encoding[0] != job:
            embedder = get_embedder(self.embedder)
            found = embedder.encoding() if isinstance(embedder, OnnxEmbedder) else None
            self._encoding = (job, ray.put(found) if found is not None else None)
            log.info("Ray Data embedding actors load %s", "the ONNX encoding of %s (%s)" % (
                found.name, found.precision) if found else f"the {type(embedder).__name__}")
        return self._encoding[1]


def ray_ingestion(settings: Settings, *, engine: InferenceEngine | None = None) -> Lorag:
    """A container whose ingestion embeds on the cluster, committing groups of
    ``ray.ingest_commit_chunks`` chunks, each embedded by one Ray Data run (ray must be
    connected); ``engine`` as ``Lorag``'s. The embedding slice of the fair scheduling is the
    group: it exists to share this machine's CPU between tenants' jobs and questions in
    small turns, while here the embedding runs on the cluster's actors, and each slice of
    its own would start the actor pool again (64-chunk slices made ingestion 4.4x local)."""
    group = settings.ray.ingest_commit_chunks
    ingest = settings.ingest.model_copy(update={"commit_chunks": group})
    limits = settings.limits.model_copy(update={"embedding_slice": UNSLICED})
    settings = settings.model_copy(update={"ingest": ingest, "limits": limits})
    return Lorag(settings, engine=engine,
                 embed_documents=RayDataEmbedding(settings.retrieval.embedder, settings.ray))
