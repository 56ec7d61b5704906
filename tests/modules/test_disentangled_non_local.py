"""The disentangled non-local block against a float64 reference written from the paper."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference_ops import D, bn_eval, pointwise, randomise_norms, softmax
from torch.utils.flop_counter import FlopCounterMode

from modules.disentangled_non_local import DisentangledNonLocal


def reference(m: DisentangledNonLocal, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """out (B, C, H, W), pairwise (B, N, N) and unary (B, N) weights; BN in eval form."""
    outs, pairs, unaries = [], [], []
    s = (m.inter_channels**-0.5 if m.use_scale else 1.0) / m.temperature
    for xb in x.to(D):
        c, h, w = xb.shape
        xf = xb.reshape(c, h * w)
        q, k, g = (pointwise(conv, xf) for conv in (m.theta, m.phi, m.g))  # (Ci, N)
        q = q - q.mean(dim=1, keepdim=True)
        k = k - k.mean(dim=1, keepdim=True)
        p = softmax(s * (q.T @ k), dim=1)  # (N, N), row = query
        u = softmax(pointwise(m.mask, xf)[0], dim=0)  # (N,)
        y = g @ p.T  # (Ci, N)
        z = g @ u  # (Ci,)
        wz = m.out_conv.weight.detach().to(D)[:, :, 0, 0]
        out = xf + bn_eval(m.out_bn, wz @ y) + bn_eval(m.out_bn, (wz @ z)[:, None])
        outs.append(out.reshape(c, h, w))
        pairs.append(p)
        unaries.append(u)
    return torch.stack(outs), torch.stack(pairs), torch.stack(unaries)


def _module(channels: int = 8, **kw: object) -> DisentangledNonLocal:
    torch.manual_seed(0)
    m = DisentangledNonLocal(channels, **kw).to(D).eval()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("use_sdpa,use_scale", list(itertools.product([False, True], repeat=2)))
def test_matches_float64_reference(use_sdpa: bool, use_scale: bool) -> None:
    m = _module(use_sdpa=use_sdpa, use_scale=use_scale, temperature=0.5)
    x = torch.randn(2, 8, 5, 7, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)


def test_default_temperature_sharpens() -> None:
    m = _module(16)
    assert m.temperature == 0.05 and m.scale == pytest.approx(8**-0.5 / 0.05)
    x = torch.randn(2, 16, 4, 6, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)


def test_training_normalises_the_unary_term_over_the_batch() -> None:
    """Train-mode BN of the broadcast unary term equals BN over the B values."""
    m = _module(use_sdpa=False)
    x = torch.randn(3, 8, 4, 5, dtype=D)
    out = m.train()(x)
    _, p, u = reference(m, x)
    wz = m.out_conv.weight.detach()[:, :, 0, 0]
    g = torch.stack([pointwise(m.g, xb.reshape(8, -1)) for xb in x])  # (B, Ci, N)
    y = wz @ (g @ p.transpose(1, 2))  # (B, C, N)
    z = wz @ (g @ u[:, :, None])  # (B, C, 1)

    def batch_norm(t: torch.Tensor) -> torch.Tensor:
        mean = t.mean(dim=(0, 2), keepdim=True)
        var = t.var(dim=(0, 2), unbiased=False, keepdim=True)
        scale = m.out_bn.weight.detach()[:, None] / torch.sqrt(var + m.out_bn.eps)
        return (t - mean) * scale + m.out_bn.bias.detach()[:, None]

    expected = x.flatten(2) + batch_norm(y) + batch_norm(z)
    torch.testing.assert_close(out.flatten(2), expected, rtol=0, atol=1e-10)


def test_identity_at_init() -> None:
    x = torch.randn(2, 8, 4, 5)
    assert torch.equal(DisentangledNonLocal(8).eval()(x), x)


def test_attention_maps() -> None:
    m = _module()
    x = torch.randn(2, 8, 5, 7, dtype=D)
    maps = m.attention_maps(x, (1, 4))
    _, p, u = reference(m, x)
    torch.testing.assert_close(maps["pairwise"].reshape(2, -1), p[:, 1 * 7 + 4], atol=1e-12, rtol=0)
    torch.testing.assert_close(maps["unary"].reshape(2, -1), u, atol=1e-12, rtol=0)


def test_macs_match_flop_counter() -> None:
    m = DisentangledNonLocal(16, reduction=4, use_sdpa=False).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 7, 5))
    assert counter.get_total_flops() == 2 * m.macs(7, 5)
    n, c, ci = 35, 16, 4
    assert m.macs(7, 5) == 3 * n * c * ci + 2 * n * n * ci + n * c + n * ci + n * ci * c + ci * c


def test_sdpa_equals_explicit_in_float32() -> None:
    m = _module(16).float()
    x = torch.randn(2, 16, 6, 9)
    m.use_sdpa = False
    explicit = m(x)
    m.use_sdpa = True
    torch.testing.assert_close(m(x), explicit, rtol=0, atol=1e-4)
