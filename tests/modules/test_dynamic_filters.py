"""DMNet's dynamic convolutional modules against a float64 reference from the paper."""

from __future__ import annotations

import pytest
import torch
from reference_ops import (
    D,
    adaptive_pool_matrix,
    bn_eval,
    conv2d_reference,
    conv_bn_relu,
    pointwise,
    randomise_norms,
)
from torch.utils.flop_counter import FlopCounterMode

from modules.dynamic_filters import DynamicFilters


def _dcm(branch, xf: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """One DCM on (C, N) -> (Ci, N): every channel convolved with its generated k x k filter."""
    k = branch.size
    filters = pointwise(branch.generate, xf @ adaptive_pool_matrix(h, w, k).T)  # (Ci, k*k)
    r = conv_bn_relu(branch.reduce, xf).reshape(-1, h, w)  # (Ci, H, W)
    out = torch.stack(
        [
            conv2d_reference(f.reshape(1, 1, k, k), rc[None], (k // 2, (k - 1) // 2))[0]
            for f, rc in zip(filters, r, strict=True)
        ]
    ).reshape(len(r), -1)
    z = bn_eval(branch.norm, out).clamp_min(0)
    return z if branch.fusion is None else conv_bn_relu(branch.fusion, z)


def reference(m: DynamicFilters, x: torch.Tensor) -> torch.Tensor:
    outs = []
    for xb in x.to(D):
        c, h, w = xb.shape
        xf = xb.reshape(c, h * w)
        cat = torch.cat([xf] + [_dcm(branch, xf, h, w) for branch in m.branches])
        conv, bn = m.bottleneck[0], m.bottleneck[1]
        y = conv2d_reference(conv.weight.detach(), cat.reshape(-1, h, w), (1, 1)).reshape(c, -1)
        outs.append(bn_eval(bn, y).clamp_min(0).reshape(c, h, w))
    return torch.stack(outs)


def _module(channels: int = 8, **kw: object) -> DynamicFilters:
    torch.manual_seed(0)
    m = DynamicFilters(channels, **kw).to(D).eval()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("size", [(7, 9), (1, 1), (3, 2)])
@pytest.mark.parametrize("kw", [{}, {"fusion": True, "reduction": 2, "filter_sizes": (2, 4)}])
def test_matches_float64_reference(size: tuple[int, int], kw: dict) -> None:
    m = _module(**kw)
    x = torch.randn(2, 8, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_defaults_and_no_maps() -> None:
    m = DynamicFilters(16)
    assert m.filter_sizes == (1, 3, 5, 7) and not m.fusion and m.inner == 16
    assert m.attention_maps(torch.randn(1, 16, 4, 4)) == {}


def test_each_image_gets_its_own_filters() -> None:
    m = _module()
    x = torch.randn(2, 8, 6, 5, dtype=D)
    both = m(x)
    torch.testing.assert_close(both[1:], m(x[1:]), rtol=0, atol=1e-12)


def test_macs_match_flop_counter() -> None:
    m = DynamicFilters(16, reduction=2, fusion=True).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 9, 7))
    assert counter.get_total_flops() == 2 * m.macs(9, 7)
