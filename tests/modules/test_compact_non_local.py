"""CGNL against an independent float64 reference: the full generalized non-local sum over
every (channel, position) pair of a group, the form the compact block factorises."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modules.compact_non_local import CompactNonLocal

D = torch.float64


def reference(m: CompactNonLocal, x: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    ci, groups = m.inter_channels, m.groups
    cg = ci // groups
    outs = []
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)
        t, p, g = (conv.weight.to(D)[:, :, 0, 0] @ xf for conv in (m.t, m.p, m.g))  # (Ci, N)
        y = torch.empty(ci, h * w, dtype=D)
        for k in range(groups):
            rows = slice(k * cg, (k + 1) * cg)
            tv, pv, gv = t[rows].flatten(), p[rows].flatten(), g[rows].flatten()
            f = torch.outer(tv, pv)  # f(i, j) = t_i p_j over the group's c*N entries
            if m.use_scale:
                f = f / (cg * h * w) ** 0.5
            y[rows] = (f @ gv).reshape(cg, h * w)  # y_i = sum_j f(i, j) g_j
        y = y.reshape(1, ci, h, w)
        z = torch.nn.functional.conv2d(y, m.z.weight.to(D), groups=groups)
        gn = m.gn
        z = torch.nn.functional.group_norm(z, groups, gn.weight.to(D), gn.bias.to(D), gn.eps)
        outs.append(xb + z[0])
    return torch.stack(outs)


@pytest.mark.parametrize("kw", [{}, {"groups": 2, "use_scale": True}, {"groups": 1}])
def test_matches_float64_reference(kw: dict) -> None:
    torch.manual_seed(0)
    m = CompactNonLocal(16, **kw).to(D)
    with torch.no_grad():  # the authors' init (std 0.01, GN weight 0) would hide the block
        for conv in (m.t, m.p, m.g, m.z):
            conv.weight.normal_(0.0, 0.3)
        m.gn.weight.uniform_(0.5, 1.5)
        m.gn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 16, 5, 6, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_starts_as_the_identity_with_the_authors_initialisation() -> None:
    torch.manual_seed(1)
    m = CompactNonLocal(256)
    assert not m.gn.weight.any() and not m.gn.bias.any()
    assert m.t.weight.std().item() == pytest.approx(0.01, rel=0.05)
    x = torch.randn(2, 256, 3, 4)
    assert torch.equal(m(x), x)
    m.open_gate()
    assert not torch.allclose(m(x), x)


def test_groups_fall_back_to_a_common_divisor() -> None:
    assert CompactNonLocal(512).groups == 8
    assert CompactNonLocal(12).groups == 6  # Ci = 6
    assert CompactNonLocal(10, groups=8).groups == 5


def test_macs_match_flop_counter() -> None:
    m = CompactNonLocal(16, groups=4).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 5, 7))
    assert counter.get_total_flops() == 2 * m.macs(5, 7)
    assert m.macs(5, 7) == 3 * 35 * 16 * 8 + 35 * 8 + 35 * 8 * 16 // 4
