"""vLLM's torch-native LoRA ops give tokens with LoRA index -1 (no adapter) nothing."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm.lora.ops.torch_ops")

from adapters.engines import vllm_cpu_fix  # noqa: E402
from vllm.lora.ops.torch_ops import lora_ops  # noqa: E402


def test_negative_index_gets_no_adapter():
    vllm_cpu_fix.apply()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, generator=gen)
    a = torch.randn(2, 1, 4, 8, generator=gen)  # 2 slots, rank 4, in 8
    b = torch.randn(2, 1, 6, 4, generator=gen)  # out 6
    indices = torch.tensor([-1, 0, 1])
    mid = torch.zeros(3, 4)
    lora_ops.bgmv_shrink(x, a, mid, indices, 1.0)
    out = torch.ones(3, 6)
    lora_ops.bgmv_expand(mid, b, out, indices, True)
    assert torch.equal(out[0], torch.ones(6))  # base-model token untouched
    for row, slot in ((1, 0), (2, 1)):
        expected = 1 + b[slot, 0] @ (a[slot, 0] @ x[row])
        assert torch.allclose(out[row], expected, atol=1e-5)
    sliced = torch.ones(3, 10)
    lora_ops.bgmv_expand_slice(mid, b, sliced, indices, 2, 6, True)
    assert torch.equal(sliced[0], torch.ones(10))


def test_apply_is_idempotent():
    vllm_cpu_fix.apply()
    assert vllm_cpu_fix.apply() is False


def test_grouping_follows_the_indices_of_each_call():
    """Consecutive calls with different index tensors at possibly the same address must
    not reuse the previous call's grouping."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 8, generator=gen)
    a = torch.randn(3, 1, 2, 8, generator=gen)
    for indices in ([0, 1, 2, -1], [2, 2, 0, 0], [-1, -1, -1, -1], [1, 0, 1, 0]):
        idx = torch.tensor(indices)
        out = torch.zeros(4, 2)
        lora_ops.bgmv_shrink(x, a, out, idx, 1.0)
        for row, slot in enumerate(indices):
            expected = torch.zeros(2) if slot < 0 else a[slot, 0] @ x[row]
            assert torch.allclose(out[row], expected, atol=1e-5)


def test_vllm_installs_the_ops_through_its_plugin_and_importing_changes_nothing():
    """vLLM calls the ``vllm.general_plugins`` entry point in each process it starts;
    importing lorag's module alone patches nothing (no import-time side effects)."""
    import importlib.metadata
    import subprocess
    import sys

    plugins = {e.name: e.value for e in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert plugins.get("lorag_cpu_lora_ops") == "adapters.engines.vllm_cpu_fix:apply"
    check = ("from vllm.lora.ops.torch_ops import lora_ops\n"
             "from adapters.engines import vllm_cpu_fix\n"
             "assert lora_ops.bgmv_shrink is not vllm_cpu_fix.bgmv_shrink\n"
             "from vllm.plugins import load_general_plugins\n"
             "load_general_plugins()\n"
             "assert lora_ops.bgmv_shrink is vllm_cpu_fix.bgmv_shrink\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


# -- the op paths against vLLM's own ops --------------------------------------------------

import importlib.util  # noqa: E402
import random  # noqa: E402

from adapters.settings import LoraOpPath  # noqa: E402


def _vllm_original_ops():
    """A fresh, unpatched copy of vLLM's torch-native LoRA ops module."""
    spec = importlib.util.spec_from_file_location("_vllm_lora_ops_reference", lora_ops.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VLLM = _vllm_original_ops()


@pytest.fixture
def path():
    """Set a path for one test, back to auto afterwards."""
    yield lambda p: vllm_cpu_fix.apply(p)
    vllm_cpu_fix.apply(LoraOpPath.AUTO)


def _with_empty_slot(weights):
    """vLLM's ops read index -1 as the last slot; with an all-zero slot appended there,
    vLLM's result is the intended one (no adapter), to compare with."""
    return torch.cat([weights, torch.zeros_like(weights[:1])])


def _case(gen, rng, rows, slots, in_dim, out_dim, adapters, no_adapter):
    x = torch.randn(rows, in_dim, generator=gen)
    w = torch.randn(slots, 1, out_dim, in_dim, generator=gen)
    chosen = rng.sample(range(slots), min(adapters, slots))
    idx = torch.tensor([-1 if rng.random() < no_adapter else rng.choice(chosen) for _ in range(rows)])
    return x, w, idx


SHAPES = [  # rows, slots, in, out, distinct adapters, share of rows without one
    (1, 1, 8, 4, 1, 0.0), (7, 4, 16, 8, 3, 0.3), (32, 16, 64, 16, 16, 0.0),
    (32, 32, 64, 16, 32, 0.1), (16, 33, 24, 40, 5, 0.5), (300, 8, 32, 16, 4, 0.2),
    (300, 16, 32, 16, 16, 0.0), (64, 16, 16, 8, 2, 0.0), (9, 16, 16, 8, 8, 1.0)]


@pytest.mark.parametrize("op_path", list(LoraOpPath))
def test_every_path_gives_vllms_products_for_random_shapes(path, op_path):
    path(op_path)
    gen, rng = torch.Generator().manual_seed(7), random.Random(7)
    for shape in SHAPES:
        for _ in range(3):
            x, w, idx = _case(gen, rng, *shape)
            rows, rank = x.shape[0], w.shape[2]
            ours, theirs = torch.zeros(rows, rank + 2), torch.zeros(rows, rank + 2)
            lora_ops.bgmv_shrink(x, w, ours, idx, 0.5)
            VLLM.bgmv_shrink(x, _with_empty_slot(w), theirs, idx, 0.5)
            assert torch.allclose(ours, theirs, atol=1e-4), (shape, op_path)
            # expand: rank -> out, adding to what is there
            b = torch.randn(w.shape[0], 1, rank + 3, rank, generator=gen)
            mid = torch.randn(rows, rank, generator=gen)
            start = torch.randn(rows, rank + 3, generator=gen)
            ours, theirs = start.clone(), start.clone()
            lora_ops.bgmv_expand(mid, b, ours, idx, True)
            VLLM.bgmv_expand(mid, _with_empty_slot(b), theirs, idx, True)
            assert torch.allclose(ours, theirs, atol=1e-4), (shape, op_path)
            wide = torch.randn(rows, rank + 10, generator=gen)
            ours, theirs = wide.clone(), wide.clone()
            lora_ops.bgmv_expand_slice(mid, b, ours, idx, 4, rank + 3, False)
            VLLM.bgmv_expand_slice(mid, _with_empty_slot(b), theirs, idx, 4, rank + 3, False)
            assert torch.allclose(ours, theirs, atol=1e-4), (shape, op_path)


@pytest.mark.parametrize("op_path", list(LoraOpPath))
def test_prefill_ops_give_vllms_products_per_sequence(path, op_path):
    """The sgmv ops (the CPU backend's only path: vLLM marks every step as prefill) expand
    per-sequence indices to rows and call the bgmv ops installed in the same module."""
    vllm_cpu_fix.apply()
    path(op_path)
    gen, rng = torch.Generator().manual_seed(11), random.Random(11)
    for lengths in ([1] * 32, [5, 1, 1, 40, 1], [120], [3] * 16):
        slots, rank, hidden = 16, 8, 32
        seq_idx = torch.tensor([rng.choice([-1, *range(slots)]) for _ in lengths])
        seq_len = torch.tensor(lengths)
        starts = torch.cumsum(seq_len, 0) - seq_len
        rows = int(seq_len.sum())
        x = torch.randn(rows, hidden, generator=gen)
        a = torch.randn(slots, 1, rank, hidden, generator=gen)
        meta = (starts, seq_len, seq_idx, len(lengths), max(lengths), rows)
        ours, theirs = torch.zeros(rows, rank), torch.zeros(rows, rank)
        lora_ops.sgmv_shrink(x, a, ours, *meta, 1.0)
        VLLM.sgmv_shrink(x, _with_empty_slot(a), theirs, *meta, 1.0)
        assert torch.allclose(ours, theirs, atol=1e-4), (lengths, op_path)
        b = torch.randn(slots, 1, hidden, rank, generator=gen)
        ours, theirs = x.clone(), x.clone()
        lora_ops.sgmv_expand(torch.ones(rows, rank), b, ours, *meta, True)
        VLLM.sgmv_expand(torch.ones(rows, rank), _with_empty_slot(b), theirs, *meta, True)
        assert torch.allclose(ours, theirs, atol=1e-4), (lengths, op_path)


def test_auto_batches_many_adapters_with_few_rows_and_groups_the_rest(path):
    path(LoraOpPath.AUTO)
    layout = vllm_cpu_fix._Layout

    def chosen(indices):
        return layout(torch.tensor(indices)).path()

    assert chosen([i % 16 for i in range(32)]) is LoraOpPath.BATCHED  # decode, 16 adapters
    assert chosen([i % 32 for i in range(32)]) is LoraOpPath.BATCHED
    assert chosen([0] * 32) is LoraOpPath.GROUPED  # one adapter
    assert chosen([i % 2 for i in range(32)]) is LoraOpPath.GROUPED  # below 4 adapters
    assert chosen([0] * 200 + list(range(1, 16))) is LoraOpPath.GROUPED  # a prefill chunk
    assert chosen([i % 16 for i in range(512)]) is LoraOpPath.GROUPED  # 32 rows per adapter
    assert chosen([-1] * 8) is LoraOpPath.GROUPED  # no adapter at all
    path(LoraOpPath.GROUPED)  # the setting that turns the batched path off
    assert chosen([i % 16 for i in range(32)]) is LoraOpPath.GROUPED
    path(LoraOpPath.BATCHED)
    assert chosen([0] * 32) is LoraOpPath.BATCHED


def test_the_engine_passes_its_path_to_the_processes_vllm_starts(path, monkeypatch):
    monkeypatch.delenv(vllm_cpu_fix.PATH_ENV, raising=False)
    vllm_cpu_fix.install_lora_ops(LoraOpPath.GROUPED)
    import os

    assert os.environ[vllm_cpu_fix.PATH_ENV] == "grouped"
    vllm_cpu_fix.apply(LoraOpPath.AUTO)
    vllm_cpu_fix.apply()  # what vLLM's plugin call does in the engine core process
    assert vllm_cpu_fix.current_path() is LoraOpPath.GROUPED
    with pytest.raises(ValueError):
        vllm_cpu_fix.apply("fastest")


# -- a whole LoRA linear layer (q/k/v slices) at once ---------------------------------------

def _punica(indices):
    """vLLM's CPU punica wrapper with ``indices`` as the step's per-token LoRA slots."""
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    wrapper = PunicaWrapperCPU(512, 64, "cpu")
    wrapper._token_lora_indices[: len(indices)] = torch.tensor(indices)
    wrapper.indices_len[:] = [len(indices)] * 4
    wrapper._update_prefill_metadata(wrapper.token_lora_indices)
    wrapper.is_prefill = True  # what vLLM's V1 runner always says
    return wrapper


def _vllm_linear(y, x, a_stacked, b_stacked, scale, slices, indices):
    """vLLM's add_lora_linear, slice by slice with its own bgmv ops (an all-zero slot
    appended for index -1)."""
    idx = torch.tensor(indices)
    start = 0
    for a, b, size in zip(a_stacked, b_stacked, slices):
        mid = torch.zeros(x.shape[0], a.shape[2])
        VLLM.bgmv_shrink(x, _with_empty_slot(a), mid, idx, scale)
        VLLM.bgmv_expand_slice(mid, _with_empty_slot(b), y, idx, start, size, True)
        start += size


@pytest.mark.parametrize("op_path", list(LoraOpPath))
def test_add_lora_linear_gives_vllms_products_per_slice(path, op_path):
    vllm_cpu_fix.apply()
    path(op_path)
    gen, rng = torch.Generator().manual_seed(13), random.Random(13)
    slices, hidden, rank = (24, 8, 8), 16, 4
    for rows, slots, adapters, no_adapter in ((32, 32, 16, 0.0), (32, 16, 16, 0.2), (7, 8, 1, 0.0),
                                              (40, 8, 3, 0.5), (120, 4, 2, 0.0), (6, 8, 4, 1.0)):
        chosen = rng.sample(range(slots), adapters)
        indices = [-1 if rng.random() < no_adapter else rng.choice(chosen) for _ in range(rows)]
        x = torch.randn(rows, hidden, generator=gen)
        a = tuple(torch.randn(slots, 1, rank, hidden, generator=gen) for _ in slices)
        b = tuple(torch.randn(slots, 1, size, rank, generator=gen) for size in slices)
        start = torch.randn(rows, sum(slices), generator=gen)
        ours, theirs = start.clone(), start.clone()
        _punica(indices).add_lora_linear(ours, x, a, b, 0.5, slices)
        _vllm_linear(theirs, x, a, b, 0.5, slices, indices)
        assert torch.allclose(ours, theirs, atol=1e-4), (rows, slots, adapters, op_path)


@pytest.mark.parametrize("op_path", [LoraOpPath.GROUPED, LoraOpPath.BATCHED])
def test_a_slice_no_adapter_of_the_batch_has_weights_for_is_skipped(path, op_path):
    """vLLM activating an adapter records which slices of its slot hold weights (k of
    q/k/v stays zero for adapters on q and v); a slice empty for every adapter of the batch
    is not computed, the others are."""
    from vllm.lora.model_manager import LoRAModelManager

    vllm_cpu_fix.apply()
    path(op_path)
    gen = torch.Generator().manual_seed(17)
    slices, slots = (6, 4, 6), 4
    a = tuple(torch.randn(slots, 1, 2, 8, generator=gen) for _ in slices)
    b = tuple(torch.randn(slots, 1, size, 2, generator=gen) for size in slices)
    for slot in range(slots):  # the middle slice (k) empty for every slot
        a[1][slot].zero_()
        b[1][slot].zero_()

    class Manager:  # the parts of vLLM's LoRAModelManager that activation uses
        modules = {"qkv_proj": type("Layer", (), {"lora_a_stacked": a, "lora_b_stacked": b})()}
        lora_index_to_id = [None] * slots

        def activate(self, lora_id):  # what vLLM's activate_adapter does before our note
            self.lora_index_to_id[self.lora_index_to_id.index(None)] = lora_id
            return True

    manager = Manager()
    record = vllm_cpu_fix._activating(Manager.activate)
    assert LoRAModelManager.activate_adapter.lorag_records_slots
    for lora_id in (11, 12, 13, 14):
        assert record(manager, lora_id)
    assert [vllm_cpu_fix._has_weights(b[1], s) for s in range(slots)] == [False] * slots
    assert all(vllm_cpu_fix._has_weights(b[0], s) for s in range(slots))
    indices = [i % slots for i in range(16)]
    x = torch.randn(16, 8, generator=gen)
    poisoned = b[1].clone()
    b[1].fill_(float("nan"))  # would show in the k columns if the skipped slice were computed
    y = torch.zeros(16, sum(slices))
    _punica(indices).add_lora_linear(y, x, a, b, 1.0, slices)
    b[1].copy_(poisoned)
    expected = torch.zeros(16, sum(slices))
    _vllm_linear(expected, x, a, b, 1.0, slices, indices)
    assert torch.allclose(y, expected, atol=1e-4)
    assert torch.equal(y[:, 6:10], torch.zeros(16, 4))
