"""``lorag eval chat``: the set file's errors name the line and the field; a run through
the real chat path (the tiny model on the PEFT engine) reports every metric with an
interval and, with ``--against``, paired differences."""

from __future__ import annotations

import json

import pytest

from ingest.types import DocumentInput
from lorag.app.container import Lorag
from lorag.app.quality.evaluation import load_set
from lorag.app.settings import Settings
from lorag.cli.main import main
from lorag.core.errors import InvalidInput

GOOD = '{"question": "How long is the warranty?", "reference": "Two years.", "gold_ids": ["w"]}'


@pytest.mark.parametrize("second_line, param", [
    ("{not json", "line 2: json"),
    ("[1, 2]", "line 2: json"),
    ('{"reference": "x"}', "line 2: question"),
    ('{"question": "  "}', "line 2: question"),
    ('{"question": "q", "reference": 3}', "line 2: reference"),
    ('{"question": "q", "gold_ids": "w"}', "line 2: gold_ids"),
    ('{"question": "q", "gold_ids": []}', "line 2: gold_ids"),
    ('{"question": "q", "answer": "a"}', "line 2: answer"),
])
def test_a_malformed_set_names_the_line_and_field(tmp_path, second_line, param):
    path = tmp_path / "set.jsonl"
    path.write_text(GOOD + "\n" + second_line + "\n")
    with pytest.raises(InvalidInput) as raised:
        load_set(path)
    assert raised.value.param == param and "line 2" in raised.value.message


def test_empty_or_missing_sets_are_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    for path in (tmp_path / "empty.jsonl", tmp_path / "missing.jsonl"):
        with pytest.raises(InvalidInput) as raised:
            load_set(path)
        assert raised.value.param == "set"
    assert [i.line for i in load_set(_write(tmp_path, ["", GOOD]))] == [2]


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def configured(tmp_path, tiny_model, monkeypatch):
    env = {"LORAG_DATA_DIR": str(tmp_path / "data"), "LORAG_ENGINE__BACKEND": "peft",
           "LORAG_ENGINE__MODEL": str(tiny_model), "LORAG_ENGINE__MAX_MODEL_LEN": "512",
           "LORAG_RETRIEVAL__EMBEDDER__BACKEND": "fake", "LORAG_ENVIRONMENT": "test"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = Lorag(Settings())
    try:
        app.tenants.create("acme")
        app.brands.create("acme", "a", system_prompt="Be brief.")
        app.brands.create("acme", "b", system_prompt="Be very brief.", top_k=1)
        app.documents.ingest("acme", [DocumentInput("w", "The warranty lasts two years."),
                                      DocumentInput("r", "Returns are free for thirty days.")])
    finally:
        app.close()
    return tmp_path


def test_eval_chat_reports_intervals_and_paired_differences(configured, capsys):
    path = _write(configured, [GOOD, '{"question": "Are returns free?", "gold_ids": ["r"]}'])
    out = configured / "report.json"
    code = main(["eval", "chat", "--tenant", "acme", "--brand", "a", "--set", str(path),
                 "--against", "b", "--out", str(out), "--no-progress", "--max-tokens", "12"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["questions"] == 2 and set(report["brands"]) == {"a", "b"}
    run = report["brands"]["a"]
    assert [a["line"] for a in run["answers"]] == [1, 2]
    recall = run["metrics"]["context_recall"]
    assert recall["n"] == 2 and 0.0 <= recall["low"] <= recall["mean"] <= recall["high"] <= 1.0
    assert run["metrics"]["token_f1"]["n"] == 1  # only the first line has a reference
    assert set(report["differences"]) == set(run["metrics"])
    assert report["differences"]["context_recall"]["n"] == 2
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(out) and set(printed["metrics"]) == {"a", "b"}


def test_eval_chat_errors_exit_2_with_the_line(configured, capsys):
    path = _write(configured, [GOOD, '{"question": 7}'])
    assert main(["eval", "chat", "--tenant", "acme", "--brand", "a", "--set", str(path)]) == 2
    assert "line 2: question" in capsys.readouterr().err
    path = _write(configured, [GOOD])
    assert main(["eval", "chat", "--tenant", "acme", "--brand", "nope", "--set", str(path)]) == 2
