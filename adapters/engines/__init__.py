"""Inference engines, registered by name in ``adapters.engines.protocol.ENGINES``.

Each factory takes ``(settings: EngineSettings, *, model: str, work_dir: Path)`` and
returns an engine that is cheap to build; ``warm_up()`` does the loading. Importing this
package imports neither vLLM nor torch.
"""

from __future__ import annotations

from pathlib import Path

from adapters.engines.protocol import ENGINES, InferenceEngine
from adapters.engines.common import AdapterUnloads
from adapters.settings import EngineSettings

__all__ = ["ENGINES", "build_engine", "AdapterUnloads"]


@ENGINES.register("vllm")
def _vllm(settings: EngineSettings, *, model: str, work_dir: Path) -> InferenceEngine:
    from adapters.engines.vllm_engine import VLLMEngine

    return VLLMEngine(settings, model=model, work_dir=work_dir)


@ENGINES.register("peft")
def _peft(settings: EngineSettings, *, model: str, work_dir: Path) -> InferenceEngine:
    from adapters.engines.peft_engine import PeftEngine

    return PeftEngine(settings, model=model, work_dir=work_dir)


@ENGINES.register("remote")
def _remote(settings: EngineSettings, *, model: str, work_dir: Path) -> InferenceEngine:
    from adapters.engines.remote.engine import RemoteEngine

    return RemoteEngine(settings, model=model, work_dir=work_dir)


def build_engine(settings: EngineSettings, *, model: str, work_dir: Path) -> InferenceEngine:
    """The engine ``settings.backend`` names; raises UnknownName listing the valid ones."""
    factory = ENGINES.get(settings.backend, param="engine.backend")
    return factory(settings, model=model, work_dir=work_dir)
