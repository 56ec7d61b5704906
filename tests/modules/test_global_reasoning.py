"""GloRe against an independent float64 reference written from the paper's equations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modules.global_reasoning import GlobalReasoning

D = torch.float64


def _w(conv: torch.nn.Module) -> torch.Tensor:
    return (
        conv.weight.detach().to(D)[..., 0]
        if conv.weight.dim() == 3
        else conv.weight.to(D)[:, :, 0, 0]
    )


def reference(m: GlobalReasoning, x: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    bn = m.blocker
    outs = []
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)
        s = _w(m.conv_state) @ xf + m.conv_state.bias.to(D)[:, None]  # (Cs, N)
        p = _w(m.conv_proj) @ xf + m.conv_proj.bias.to(D)[:, None]  # (K, N): B = P
        v = s @ p.t()  # (Cs, K): node states
        if m.normalize:
            v = v / (h * w)
        a = _w(m.gcn_node)  # (K, K): the graph's adjacency, acting on the nodes
        hidden = v + v @ a.t() + m.gcn_node.bias.to(D)[None, :]  # (I - A_g) V, as (Cs, K)
        v = _w(m.gcn_state) @ torch.relu(hidden)  # W_g: the state update
        y = _w(m.conv_extend) @ (v @ p)  # (C, N): back to coordinate space
        y = (y - bn.running_mean.to(D)[:, None]) / torch.sqrt(
            bn.running_var.to(D)[:, None] + bn.eps
        )
        y = y * bn.weight.to(D)[:, None] + bn.bias.to(D)[:, None]
        outs.append(xb + y.reshape(c, h, w))
    return torch.stack(outs)


@pytest.mark.parametrize("kw", [{}, {"mid": 3, "normalize": True}])
def test_matches_float64_reference(kw: dict) -> None:
    torch.manual_seed(0)
    m = GlobalReasoning(8, **kw).to(D).eval()
    with torch.no_grad():
        m.blocker.running_mean.uniform_(-0.5, 0.5)
        m.blocker.running_var.uniform_(0.5, 2.0)
        m.blocker.bias.uniform_(-0.5, 0.5)
        m.blocker.weight.uniform_(0.5, 1.5)  # gamma starts at 0: make the unit non-trivial
    x = torch.randn(2, 8, 5, 7, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)
    proj = m.attention_maps(x)["projection"]
    p0 = _w(m.conv_proj) @ x[0].reshape(8, 35) + m.conv_proj.bias.to(D)[:, None]
    torch.testing.assert_close(proj[0].reshape(m.nodes, 35), p0, rtol=0, atol=1e-12)


def test_defaults_follow_the_authors_ratio() -> None:
    m = GlobalReasoning(512)
    assert (m.states, m.nodes, m.normalize) == (256, 128, False)
    assert m.blocker.eps == 1e-4


def test_identity_until_the_gate_opens() -> None:
    m = GlobalReasoning(8).eval()
    x = torch.randn(2, 8, 3, 4)
    assert torch.equal(m(x), x)
    m.open_gate()
    assert not torch.allclose(m(x), x)


def test_macs_match_flop_counter() -> None:
    m = GlobalReasoning(16, mid=3).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 5, 7))
    assert counter.get_total_flops() == 2 * m.macs(5, 7)
    n = 35
    assert m.macs(5, 7) == n * 16 * 9 + 2 * n * 6 * 3 + 6 * 9 + 36 * 3 + n * 6 * 16
