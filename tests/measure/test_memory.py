"""Memory figures that say what they measure: saved for backward, CPU and CUDA peaks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import modules
from attnbench.measure.memory import CPU_PEAK, inference_memory, saved_tensor_bytes, training_memory


def test_saved_bytes_count_activations_not_weights() -> None:
    conv = nn.Conv2d(4, 4, 1)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    # conv saves its input and its weight; the weight is the model's own, left out
    assert saved_tensor_bytes(conv, x) == x.numel() * 4


def test_saved_bytes_count_a_shared_storage_once() -> None:
    class Twice(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * x.view(-1).view_as(x)).sum()  # mul saves both views of x

    x = torch.randn(2, 16, requires_grad=True)
    assert saved_tensor_bytes(Twice(), x) == x.numel() * 4


@pytest.mark.parametrize("name", ["nonlocal", "ccnet", "ema"])
def test_memory_figures_are_positive_and_grow(name) -> None:
    torch.manual_seed(0)
    module = modules.build(name, 32)
    figures = []
    for size in (8, 16):
        x = torch.randn(1, 32, size, size, requires_grad=True)
        infer = inference_memory(module, x)
        module.train()
        figures.append((infer.bytes, saved_tensor_bytes(module, x), training_memory(module, x)))
        assert infer.kind == CPU_PEAK and figures[-1][2].kind == CPU_PEAK
    (i0, s0, t0), (i1, s1, t1) = figures
    assert 0 < i0 < i1 and 0 < s0 < s1 and 0 < t0.bytes < t1.bytes
    assert module.training and all(p.grad is None for p in module.parameters())


def test_nonlocal_inference_memory_sees_the_attention_matrix() -> None:
    x = torch.randn(1, 32, 24, 24)
    n = 24 * 24
    explicit = inference_memory(modules.build("nonlocal", 32, use_sdpa=False), x)
    assert explicit.bytes >= n * n * 4  # the (N, N) float32 attention exists at some point
    fused = inference_memory(modules.build("nonlocal", 32), x)  # SDPA, the default
    assert fused.bytes < n * n * 4
