"""LatentGNN against an independent float64 reference written from the paper's three steps."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modules.latent_graph import LatentGNN

D = torch.float64


def _cb(block: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """1x1 conv then eval BN (then ReLU when the block has one) on (c, N)."""
    conv, bn = block[0], block[1]
    y = conv.weight.to(D)[:, :, 0, 0] @ x
    y = (y - bn.running_mean.to(D)[:, None]) / torch.sqrt(bn.running_var.to(D)[:, None] + bn.eps)
    y = y * bn.weight.to(D)[:, None] + bn.bias.to(D)[:, None]
    return y.relu() if len(block) > 2 else y


def _unit(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t / t.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def reference(m: LatentGNN, x: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    outs = []
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)
        v, u = _unit(_cb(m.down_v2l, xf), 0), _unit(_cb(m.down_l2v, xf), 0)  # (Ci, N)
        a_in = _unit(_cb(m.psi_v2l, v), 1)  # (d, N): each latent node's weights over N
        a_out = _unit(_cb(m.psi_l2v, u), 0)  # (d, N): each position's weights over d
        z = a_in @ v.t()  # step 1, visible -> latent: (d, Ci)
        zn = _unit(z, 1)
        e = (zn @ zn.t()).exp()
        z = (e / e.sum(dim=1, keepdim=True)) @ z  # step 2, latent -> latent
        y = z.t() @ a_out  # step 3, latent -> visible: (Ci, N)
        outs.append(xb + m.gamma.to(D) * _cb(m.up, y).reshape(c, h, w))
    return torch.stack(outs)


@pytest.mark.parametrize("kw", [{}, {"channel_stride": 2, "latent_dim": 5}])
def test_matches_float64_reference(kw: dict) -> None:
    torch.manual_seed(0)
    m = LatentGNN(8, **kw).to(D).eval()
    with torch.no_grad():
        m.gamma.fill_(0.7)
        for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.5)
    x = torch.randn(2, 8, 5, 6, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_identity_until_the_gate_opens() -> None:
    m = LatentGNN(8, latent_dim=4).eval()
    x = torch.randn(2, 8, 3, 3)
    assert torch.equal(m(x), x)
    m.open_gate()
    assert m.gamma.item() == 1.0 and not torch.allclose(m(x), x)


def test_macs_match_flop_counter() -> None:
    m = LatentGNN(16, latent_dim=5).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 5, 7))
    assert counter.get_total_flops() == 2 * m.macs(5, 7)
    n, ci, d = 35, 4, 5
    assert (
        m.macs(5, 7)
        == 2 * n * 16 * ci + 2 * n * ci * d + 2 * n * d * ci + 2 * d * d * ci + n * ci * 16
    )
