"""`lorag eval retrieval` scores dense retrieval exactly as MTEB does for documents that
fit in one chunk: cosine of the query with ``title + " " + text`` encoded by the same
model, ranked and scored with trec_eval's nDCG@10."""

import random

import numpy as np
import pytest

from lorag.app.settings import Settings
from lorag.app.container import Lorag
from lorag.app.evaluation import evaluate, load_beir, ndcg_at_k, score_run
from lorag.testing.beir import write_beir

pytestmark = pytest.mark.integration

WORDS = ("river mountain engine protein market violin glacier theorem harbor vaccine "
         "compiler orchard satellite tariff enzyme novel bridge cipher drought galaxy "
         "lantern mortgage pollen reactor sonnet turbine voltage whale yeast zinc").split()


def synthetic(n_docs: int = 40, n_queries: int = 12):
    rng = random.Random(0)
    corpus = [{"_id": f"doc{i}", "title": f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
               "text": " ".join(rng.choice(WORDS) for _ in range(30)) + "."}
              for i in range(n_docs)]
    queries, qrels = [], []
    for q in range(n_queries):
        target = rng.randrange(n_docs)
        words = corpus[target]["text"].rstrip(".").split()
        queries.append({"_id": f"q{q}", "text": " ".join(rng.sample(words, 4))})
        qrels += [(f"q{q}", f"doc{target}", 2), (f"q{q}", f"doc{(target + 1) % n_docs}", 1)]
    return corpus, queries, qrels


def test_dense_eval_matches_direct_model_scoring(tmp_path):
    corpus, queries, qrels = synthetic()
    folder = write_beir(tmp_path / "beir", corpus, queries, qrels)
    # the reference below is the model's own PyTorch encode: so is lorag's embedder here
    # (the ONNX backend's fidelity to it is bench_embedders' subject)
    embedder = {"backend": "sentence-transformers"}
    app = Lorag(Settings(data_dir=tmp_path / "data", environment="test",
                         retrieval={"embedder": embedder}))
    app.tenants.create("fidelity")
    result = evaluate(app, "fidelity", folder, ["dense", "lexical", "hybrid"])
    assert all(d.chunks == 1 for d in app.documents.list("fidelity"))

    model = app.embedder.model
    docs = model.encode([(d["title"] + " " + d["text"]).strip() for d in corpus],
                        normalize_embeddings=True)
    dataset = load_beir(folder)
    query_ids = list(dataset.queries)
    vectors = model.encode([dataset.queries[q] for q in query_ids], normalize_embeddings=True)
    run = {q: {d["_id"]: float(s) for d, s in zip(corpus, docs @ v)}
           for q, v in zip(query_ids, vectors)}
    expected = score_run(run, dataset.qrels)
    assert result["dense"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=0.01)
    assert result["dense"]["recall@10"] == pytest.approx(expected["recall@10"], abs=0.01)
    assert result["hybrid"]["ndcg@10"] >= min(result["dense"]["ndcg@10"],
                                              result["lexical"]["ndcg@10"])
    assert np.isfinite(ndcg_at_k(run[query_ids[0]], dataset.qrels[query_ids[0]]))
    app.close()
