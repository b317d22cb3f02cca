"""Shared fixtures: an isolated data directory and service container per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# vLLM in-process in tests: it starts in seconds (serving runs it in its own process,
# EngineSettings.engine_process)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from lorag.app.settings import Settings  # noqa: E402
from lorag.app.container import Lorag  # noqa: E402


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", environment="test")


@pytest.fixture
def app(settings):
    lorag = Lorag(settings)
    yield lorag
    lorag.close()


# The tiny model and LoRA factory (session-scoped); see tests/fixtures_models.py.
from tests.fixtures_models import tiny_lora_factory, tiny_model  # noqa: E402,F401

# One local Ray cluster per session for the Ray tests; see tests/fixtures_ray.py.
from tests.fixtures_ray import ray_cluster  # noqa: E402,F401
