"""A sentence-transformers model's transformer as an ONNX Runtime session, exported once.

The export is the model's first module (the Hugging Face transformer: token ids in,
token embeddings out); pooling and normalisation stay the model's own modules, run in
torch on the session's output, so every model folder sentence-transformers loads
keeps its own pooling. Three steps, each onnxruntime's or torch's own:
- the graph is written by ``torch.onnx.export`` (the TorchScript exporter) with the
  model's attention in its eager form: the form of the graph ONNX Runtime's fusions
  recognise (the SDPA form exports as masks and ``Where`` ops that nothing fuses);
- for BERT-family encoders (``FUSED_MODEL_TYPES``), onnxruntime's transformer optimizer
  fuses each layer's attention, bias + GELU and residual + layer norm into single ops
  (fewer, larger kernels: the unfused int8 graph spent a third of its time in masks,
  transposes and element-wise ops);
- for int8, onnxruntime's ``quantize_dynamic`` (int8 weights per output channel,
  activations quantized on the fly) quantizes the MatMuls and the fused attention's
  projections, never the embedding lookup (that costs quality and saves no time).

Why not sentence-transformers' own ``backend="onnx"``: it exports through ``optimum``,
whose releases pin transformers below the version lorag runs; onnxruntime alone needs
nothing else changed.

Exports are cached in ``cache_dir/<content hash of the model folder>-<precision>/``:
written into a temporary folder and renamed into place, so two processes exporting at
once never see half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_VERSION = "2"  # part of the cache key: a change to how exports are made re-exports
# Hugging Face model types whose graphs onnxruntime's "bert" optimizer fuses; other models
# are exported and quantized unfused (ONNX Runtime's load-time optimizations only)
FUSED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})
_digests: dict[Path, str] = {}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lorag" / "onnx"


def model_digest(folder: Path) -> str:
    """sha256 over the model folder's files (relative names and contents), once a process."""
    folder = folder.resolve()
    if folder not in _digests:
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as data:
                for block in iter(lambda: data.read(1 << 20), b""):
                    digest.update(block)
        _digests[folder] = digest.hexdigest()
    return _digests[folder]


def exported_model(model, folder: Path, precision: str, cache_dir: Path) -> Path:
    """The ONNX file of ``model``'s transformer at ``precision`` (float32 or int8),
    exported on first use and cached by the model folder's content hash.

    Raises OSError if the cache folder cannot be written."""
    key = f"{model_digest(folder)[:20]}-{precision}-opset{OPSET}-v{EXPORT_VERSION}"
    target = cache_dir / key
    if (target / "model.onnx").exists():
        return target / "model.onnx"
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        log.info("exporting embedder model=%s to ONNX precision=%s into %s", folder, precision,
                 target)
        _export(model, work / "float32.onnx")
        _fuse(model, work / "float32.onnx")
        if precision == "int8":
            _quantize(work / "float32.onnx", work / "model.onnx")
            (work / "float32.onnx").unlink()
        else:
            (work / "float32.onnx").rename(work / "model.onnx")
        try:
            work.rename(target)
        except OSError:  # another process put it there first: theirs is the same
            if not (target / "model.onnx").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / "model.onnx"


def tokenize(model, texts: list[str]) -> dict:
    """The model's own tokenizing (``preprocess``; ``tokenize`` before sentence-transformers
    5.2), padded and truncated as its encode does."""
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def input_names(model) -> list[str]:
    """The tokenizer outputs the transformer takes, in the exported graph's order."""
    sample = tokenize(model, ["an example"])
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]


def _export(model, path: Path) -> None:
    import torch

    names = input_names(model)
    transformer = model[0].auto_model.eval()
    sample = tokenize(model, ["an example sentence", "a second, somewhat longer example"])
    with torch.inference_mode(), _eager_attention(transformer):
        torch.onnx.export(_token_embeddings(transformer, names), tuple(sample[n] for n in names),
                          str(path), input_names=names, output_names=["token_embeddings"],
                          dynamic_axes={n: {0: "batch", 1: "tokens"}
                                        for n in [*names, "token_embeddings"]},
                          opset_version=OPSET, dynamo=False)


@contextlib.contextmanager
def _eager_attention(transformer):
    """The transformer's attention in its eager form while exporting, then as it was."""
    previous = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")
    try:
        yield
    finally:
        transformer.set_attn_implementation(previous)


def _fuse(model, path: Path) -> None:
    """Fuse the graph at ``path`` in place, for the model types the optimizer knows."""
    config = model[0].auto_model.config
    if config.model_type not in FUSED_MODEL_TYPES:
        log.info("no fusion for model_type=%s: exported unfused", config.model_type)
        return
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    log.info("fused embedder graph: %s", {op: n for op, n in
                                         fused.get_fused_operator_statistics().items() if n})
    fused.save_model_to_file(str(path))


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the fused ops' outputs carry no type shape inference can see: they are float
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _token_embeddings(transformer, names: list[str]):
    """The transformer as a module of positional inputs returning its last hidden state
    (the exporter passes inputs by position; torch is imported only when exporting)."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            return self.transformer(**dict(zip(names, inputs))).last_hidden_state

    return TokenEmbeddings()
