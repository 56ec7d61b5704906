"""GCNet's global context block against a float64 reference written from the paper."""

from __future__ import annotations

import pytest
import torch
from reference_ops import D, pointwise, randomise_norms, softmax
from torch.utils.flop_counter import FlopCounterMode

from modules.global_context import GlobalContext


def reference(m: GlobalContext, x: torch.Tensor) -> torch.Tensor:
    outs = []
    for xb in x.to(D):
        c, h, w = xb.shape
        xf = xb.reshape(c, h * w)  # (C, N)
        a = softmax(pointwise(m.mask, xf), dim=1)  # (1, N)
        ctx = xf @ a.T  # (C, 1)
        t = pointwise(m.in_conv, ctx)[:, 0]  # (Cp,)
        t = (t - t.mean()) / torch.sqrt(t.var(unbiased=False) + m.norm.eps)
        t = t * m.norm.weight.detach().to(D).flatten() + m.norm.bias.detach().to(D).flatten()
        t = pointwise(m.out_conv, t.clamp_min(0)[:, None])  # (C, 1)
        outs.append((xf + t).reshape(c, h, w))
    return torch.stack(outs)


def _module(channels: int = 16, **kw: object) -> GlobalContext:
    torch.manual_seed(0)
    m = GlobalContext(channels, **kw).to(D)
    m.open_gate()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (1, 6)])
@pytest.mark.parametrize("training", [False, True])  # no BN: train and eval agree
def test_matches_float64_reference(size: tuple[int, int], training: bool) -> None:
    m = _module().train(training)
    x = torch.randn(2, 16, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-12)


def test_identity_at_init_and_default_ratio() -> None:
    m = GlobalContext(32)
    assert m.planes == 8
    x = torch.randn(2, 32, 4, 5)
    assert torch.equal(m(x), x)


def test_pooling_map_is_the_softmax_of_the_mask() -> None:
    m = _module()
    x = torch.randn(2, 16, 4, 6, dtype=D)
    maps = m.attention_maps(x, (0, 0))
    expected = torch.stack([softmax(pointwise(m.mask, xb.reshape(16, -1)), 1) for xb in x])
    torch.testing.assert_close(maps["pooling"].reshape(2, 1, -1), expected, rtol=0, atol=1e-14)
    assert torch.equal(maps["pooling"], m.attention_maps(x)["pooling"])


def test_macs_match_flop_counter() -> None:
    m = GlobalContext(16, ratio=0.5).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 7, 5))
    assert counter.get_total_flops() == 2 * m.macs(7, 5)
    assert m.macs(7, 5) == 2 * 35 * 16 + 2 * 16 * 8


def test_too_small_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match="ratio"):
        GlobalContext(4, ratio=0.1)
