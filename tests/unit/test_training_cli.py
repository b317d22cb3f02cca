"""``lorag models prepare`` and ``lorag adapters train`` end to end on the tiny model."""

from __future__ import annotations

import json

import pytest

from adapters import models
from lorag.cli.main import main
from lorag.app.settings import Settings
from lorag.app.container import Lorag
from tests.unit.test_training import conversations


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_models_prepare_prints_the_folder(data_dir, monkeypatch, capsys):
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf, out: out.mkdir(parents=True))
    assert main(["models", "prepare"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(data_dir / "models" / models.SMOLLM2_FOLDER)


def test_adapters_train_sft_prints_the_metrics(data_dir, tiny_model, tmp_path, capsys):
    app = Lorag(Settings())
    app.tenants.create("acme")
    app.close()
    sft = tmp_path / "voice.jsonl"
    sft.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations()))
    out = tmp_path / "exported"
    code = main(["adapters", "train", "--tenant", "acme", "--name", "voice", "--sft", str(sft),
                 "--steps", "3", "--base", str(tiny_model), "--holdout", "0.34", "--no-register",
                 "--no-progress", "--out", str(out), "--targets", "q_proj,v_proj,o_proj"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "voice" and summary["version"] is None
    assert summary["heldout"]["tokens"] > 0 and summary["general"]["tokens"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["spec"]["targets"] == ["q_proj", "v_proj", "o_proj"]


def test_adapters_train_reports_client_errors(data_dir, tiny_model, capsys):
    code = main(["adapters", "train", "--tenant", "ghost", "--name", "voice", "--domain",
                 "--base", str(tiny_model)])
    assert code == 2 and "ghost" in capsys.readouterr().err
    code = main(["adapters", "train", "--tenant", "acme", "--name", "Bad Name", "--domain"])
    assert code == 2 and "name" in capsys.readouterr().err
