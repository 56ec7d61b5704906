"""ANN's asymmetric pyramid non-local block against a float64 reference from the paper."""

from __future__ import annotations

import pytest
import torch
from reference_ops import D, adaptive_pool_matrix, conv_bn_relu, pointwise, randomise_norms
from reference_ops import softmax as softmax_ref
from torch.utils.flop_counter import FlopCounterMode

from modules.asymmetric_non_local import AsymmetricNonLocal


def _pyramid(h: int, w: int, scales: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([adaptive_pool_matrix(h, w, s) for s in scales])  # (S, N)


def reference(m: AsymmetricNonLocal, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out (B, C, H, W) and the attention over cells (B, N, S); BN in eval form."""
    outs, attns = [], []
    _, c, h, w = x.shape
    pool = _pyramid(h, w, m.pool_scales)  # (S, N)
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)
        q = conv_bn_relu(m.key, xf)  # (Ck, N)
        keys, values = q @ pool.T, pointwise(m.value, xf) @ pool.T  # (Ck, S)
        a = softmax_ref(q.T @ keys / m.key_channels**0.5, dim=1)  # (N, S)
        context = pointwise(m.out_conv, values @ a.T)  # (C, N)
        outs.append(conv_bn_relu(m.fuse, torch.cat([context, xf])).reshape(c, h, w))
        attns.append(a)
    return torch.stack(outs), torch.stack(attns)


def _module(channels: int = 8, **kw: object) -> AsymmetricNonLocal:
    torch.manual_seed(0)
    m = AsymmetricNonLocal(channels, **kw).to(D).eval()
    m.open_gate()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("size", [(9, 7), (5, 5), (1, 3), (16, 12)])
@pytest.mark.parametrize("scales", [(1, 3, 6, 8), (2, 5)])
def test_matches_float64_reference(size: tuple[int, int], scales: tuple[int, ...]) -> None:
    m = _module(pool_scales=scales)
    x = torch.randn(2, 8, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)


def test_defaults_and_initial_context() -> None:
    m = AsymmetricNonLocal(32)
    assert m.key_channels == 16 and m.cells == 110
    assert not m.out_conv.weight.any() and not m.out_conv.bias.any()


def test_attention_map_spreads_the_cell_weights_over_their_pixels() -> None:
    m = _module()
    x = torch.randn(2, 8, 9, 7, dtype=D)
    state = {k: v.clone() for k, v in m.train().state_dict().items()}
    spread = m.attention_maps(x, (2, 5))["attention"]
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    _, a = reference(m.eval(), x)
    expected = a[:, 2 * 7 + 5] @ _pyramid(9, 7, m.pool_scales)  # (B, N)
    torch.testing.assert_close(spread.reshape(2, -1), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(spread.sum(dim=(1, 2, 3)), torch.ones(2, dtype=D))


def test_macs_match_flop_counter() -> None:
    m = AsymmetricNonLocal(16, reduction=4).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 9, 10))
    assert counter.get_total_flops() == 2 * m.macs(9, 10)
    n, c, ck = 90, 16, 4
    assert m.macs(9, 10) == 2 * n * c * ck + 2 * n * 110 * ck + n * ck * c + 2 * n * c * c


@pytest.mark.parametrize("kw", [{"reduction": 0}, {"pool_scales": ()}, {"pool_scales": (0, 2)}])
def test_bad_settings_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        AsymmetricNonLocal(8, **kw)
