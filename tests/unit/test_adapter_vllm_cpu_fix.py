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
