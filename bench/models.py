"""Models and LoRA adapters for the generation benchmarks, made once and cached.

``tiny``: the random tiny Llama of the tests (hidden 64, 2 layers; instant, for wiring
and for overheads that do not depend on the model). ``smollm2``: the real
SmolLM2-135M-Instruct that ``lorag serve`` uses, prepared once in lorag's default data
dir. Adapters are random rank-8 LoRAs on q_proj and v_proj (``lorag.testing.tiny_model.make_lora``),
cached under ``.cache/bench/loras/<model>/``.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import REPO_DIR

CACHE = REPO_DIR / ".cache" / "bench"


def model_path(name: str) -> Path:
    """The folder of model ``name``: tiny, smollm2, or a path."""
    if name == "tiny":
        from lorag.testing.tiny_model import build_tiny_model

        return build_tiny_model(REPO_DIR / ".cache" / "bench-tiny-model")
    if name == "smollm2":
        from adapters.models import default_model_path
        from lorag.app.settings import Settings
        from lorag.core.layout import Layout

        return default_model_path(Layout(Settings().data_dir))
    return Path(name)


def loras(model: str, count: int) -> list[Path]:
    """``count`` distinct random LoRA folders for ``model`` (seeds 100...)."""
    from lorag.testing.tiny_model import make_lora

    base = model_path(model)
    root = CACHE / "loras" / base.name
    found = []
    for i in range(count):
        folder = root / f"seed{100 + i}"
        if not (folder / ".complete").exists():
            make_lora(base, folder, seed=100 + i)
            (folder / ".complete").touch()
        found.append(folder)
    return found
