"""APCNet's adaptive context modules against a float64 reference written from the paper."""

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

from modules.adaptive_pyramid_context import AdaptivePyramidContext


def _acm(branch, xf: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One ACM on (C, N): its output (Ci, N) and its affinities (N, S)."""
    s = branch.scale
    r = conv_bn_relu(branch.reduce, xf)  # (Ci, N)
    cells = conv_bn_relu(branch.pooled, xf @ adaptive_pool_matrix(h, w, s).T)  # (Ci, S)
    g = conv_bn_relu(branch.global_info, r.mean(dim=1, keepdim=True))  # (Ci, 1)
    a = torch.sigmoid(pointwise(branch.affinity, r + g))  # (S, N)
    z = (conv_bn_relu(branch.residual, cells @ a) + r).clamp_min(0)
    if branch.fusion is not None:
        z = conv_bn_relu(branch.fusion, z)
    return z, a.T


def reference(m: AdaptivePyramidContext, x: torch.Tensor) -> torch.Tensor:
    outs = []
    for xb in x.to(D):
        c, h, w = xb.shape
        xf = xb.reshape(c, h * w)
        parts = [xf] + [_acm(branch, xf, h, w)[0] for branch in m.branches]
        cat = torch.cat(parts).reshape(-1, h, w)
        conv, bn = m.bottleneck[0], m.bottleneck[1]
        y = conv2d_reference(conv.weight.detach(), cat, (1, 1)).reshape(c, -1)
        outs.append(bn_eval(bn, y).clamp_min(0).reshape(c, h, w))
    return torch.stack(outs)


def _module(channels: int = 8, **kw: object) -> AdaptivePyramidContext:
    torch.manual_seed(0)
    m = AdaptivePyramidContext(channels, **kw).to(D).eval()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("size", [(7, 9), (1, 1), (2, 5)])
@pytest.mark.parametrize("kw", [{}, {"fusion": False, "reduction": 2, "pool_scales": (2, 4)}])
def test_matches_float64_reference(size: tuple[int, int], kw: dict) -> None:
    m = _module(**kw)
    x = torch.randn(2, 8, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_defaults() -> None:
    m = AdaptivePyramidContext(16)
    assert m.pool_scales == (1, 2, 3, 6) and m.fusion and m.inner == 16
    assert m.bottleneck[0].in_channels == 16 + 4 * 16 and m.bottleneck[0].kernel_size == (3, 3)


def test_affinity_map_spreads_each_cell_over_its_pixels() -> None:
    m = _module()
    x = torch.randn(2, 8, 7, 9, dtype=D)
    spread = m.attention_maps(x, (4, 2))["affinity"]
    expected = 0
    for branch in m.branches:
        a = torch.stack([_acm(branch, xb.reshape(8, -1), 7, 9)[1] for xb in x])  # (B, N, S)
        expected = expected + a[:, 4 * 9 + 2] @ adaptive_pool_matrix(7, 9, branch.scale)
    torch.testing.assert_close(spread.reshape(2, -1), expected, rtol=0, atol=1e-12)


def test_batch_of_one_trains() -> None:
    """mmseg's ACM cannot normalise its 1 x 1 cells for one image; here it can."""
    m = _module().train()
    out = m(torch.randn(1, 8, 5, 6, dtype=D))
    assert torch.isfinite(out).all()


def test_macs_match_flop_counter() -> None:
    m = AdaptivePyramidContext(16, reduction=2).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 9, 7))
    assert counter.get_total_flops() == 2 * m.macs(9, 7)
