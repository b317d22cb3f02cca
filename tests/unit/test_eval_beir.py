"""`lorag eval retrieval` end to end on a tiny BEIR-format folder, and the search CLI."""

import json

import pytest

from lorag.cli.main import main
from lorag.app.evaluation import load_beir
from lorag.testing.beir import write_beir

CORPUS = [
    {"_id": "d1", "title": "Volcanoes", "text": "Lava and magma erupt from volcanoes."},
    {"_id": "d2", "title": "Glaciers", "text": "Glaciers carve valleys of ice slowly."},
    {"_id": "d3", "title": "", "text": "Coral reefs shelter colourful fish."},
    {"_id": "d4", "title": "Deserts", "text": "Dunes of sand shift in desert winds."},
    {"_id": "q3", "title": "Same id as a query", "text": "reefs reefs reefs coral coral"},
]
QUERIES = [{"_id": "q1", "text": "magma lava eruption"}, {"_id": "q2", "text": "ice valleys"},
           {"_id": "q3", "text": "coral reefs fish"}, {"_id": "q9", "text": "not judged"}]
QRELS = [("q1", "d1", 2), ("q2", "d2", 1), ("q3", "d3", 1), ("q3", "d4", 0)]


@pytest.fixture
def beir(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LORAG_RETRIEVAL__EMBEDDER__BACKEND", "fake")
    return write_beir(tmp_path / "tiny", CORPUS, QUERIES, QRELS)


def test_load_beir_reads_the_split(beir):
    dataset = load_beir(beir)
    assert sorted(dataset.queries) == ["q1", "q2", "q3"]
    assert dataset.qrels["q3"] == {"d3": 1, "d4": 0}
    docs = {d.id: d for d in dataset.corpus()}
    assert docs["d1"].text == "Volcanoes Lava and magma erupt from volcanoes."
    assert docs["d3"].text == "Coral reefs shelter colourful fish." and docs["d3"].title is None


def test_eval_command_prints_metrics_per_mode(beir, capsys):
    assert main(["eval", "retrieval", "--tenant", "beir", "--beir", str(beir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ingest"]["added"] == 5
    for mode in ("dense", "lexical", "hybrid"):
        # q3's own id is ignored, so d3 ranks first for it in every mode
        assert result[mode] == {"ndcg@10": 100.0, "recall@10": 100.0, "queries": 3,
                                "seconds": result[mode]["seconds"]}
    assert main(["eval", "retrieval", "--tenant", "beir", "--beir", str(beir),
                 "--mode", "dense"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ingest"]["unchanged"] == 5 and "lexical" not in again
    assert main(["eval", "retrieval", "--tenant", "beir", "--beir", str(beir),
                 "--mode", "hybrid"]) == 0
    hybrid = json.loads(capsys.readouterr().out)
    assert hybrid["hybrid"]["ndcg@10"] == 100.0 and "dense" not in hybrid


def test_eval_command_refuses_a_folder_that_is_not_beir(beir, tmp_path, capsys):
    assert main(["eval", "retrieval", "--tenant", "beir", "--beir", str(tmp_path)]) == 2
    assert "corpus.jsonl" in capsys.readouterr().err


def test_ingest_search_and_documents_commands(beir, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# Kites\n\nKites fly on windy beaches.")
    (folder / "b.txt").write_text("Sailing boats need wind too.")
    (folder / "meta.jsonl").write_text(json.dumps(
        {"id": "m1", "text": "Windsurfing in 2024", "metadata": {"year": 2024, "tag": "2024"}}) + "\n")
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["ingest", "--tenant", "acme", str(folder), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "--tenant", "acme", "kites windy", "--mode", "lexical", "-k", "1"]) == 0
    assert [h["document_id"] for h in json.loads(capsys.readouterr().out)] == ["notes/a.md"]
    for flt, expected in (("year=2024", ["m1"]), ('tag="2024"', ["m1"]), ("tag=2024", [])):
        assert main(["search", "--tenant", "acme", "windsurfing", "--filter", flt]) == 0
        assert [h["document_id"] for h in json.loads(capsys.readouterr().out)] == expected
    assert main(["search", "--tenant", "acme", "wind", "--doc", "notes/b.txt", "--mode", "dense"]) == 0
    assert {h["document_id"] for h in json.loads(capsys.readouterr().out)} == {"notes/b.txt"}
    assert main(["documents", "delete", "--tenant", "acme", "notes/a.md"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": ["notes/a.md"]}
    assert main(["documents", "list", "--tenant", "acme"]) == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == ["m1", "notes/b.txt"]
    assert main(["documents", "delete", "--tenant", "acme", "notes/a.md"]) == 2
    assert main(["search", "--tenant", "acme", "x", "-k", "0"]) == 2
    assert "error (k)" in capsys.readouterr().err
    (folder / "bad.txt").write_bytes(b"\x00\x01\x02")
    assert main(["ingest", "--tenant", "acme", str(folder / "bad.txt"), "--no-progress"]) == 1
