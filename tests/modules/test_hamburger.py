"""Hamburger (NMF) against an independent float64 reference written from the paper's
multiplicative updates, one sample and one group at a time, and its one-step gradient."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modules.hamburger import Hamburger

D = torch.float64
EPS = 1e-6


def _nmf(x: torch.Tensor, u: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (D, N) >= 0, u (D, R): U_T and V_T after the T updates, as constants."""
    x, u = x.detach(), u.clone()
    e = (x.t() @ u).exp()
    v = e / e.sum(dim=1, keepdim=True)  # softmax over R
    for _ in range(steps):
        v = v * (x.t() @ u) / (v @ (u.t() @ u) + EPS)
        u = u * (x @ v) / (u @ (v.t() @ v) + EPS)
    return u, v


def reference(m: Hamburger, x: torch.Tensor) -> torch.Tensor:
    """Eval mode (the fixed bases). The gradient flows as the one-step gradient does:
    through X in the last coefficient update and through x~ = U V^T only."""
    b, c, h, w = x.shape
    w_in = m.ham_in.weight.to(D)[:, :, 0, 0]
    feat = torch.relu(torch.einsum("oc,bchw->bohw", w_in, x) + m.ham_in.bias.to(D)[:, None, None])
    s, d = m.groups, c // m.groups
    recon = torch.empty_like(feat)
    for i in range(b):
        for g in range(s):
            xg = feat[i, g * d : (g + 1) * d].reshape(d, h * w)
            u, v = _nmf(xg, m.bases[g].to(D), m.eval_steps)
            v = v * (xg.t() @ u) / (v @ (u.t() @ u) + EPS)  # with gradient through xg
            recon[i, g * d : (g + 1) * d] = (u @ v.t()).reshape(d, h, w)
    y = torch.einsum("oc,bchw->bohw", m.ham_out.weight.to(D)[:, :, 0, 0], recon)
    y = torch.nn.functional.group_norm(
        y, m.norm.num_groups, m.norm.weight.to(D), m.norm.bias.to(D), m.norm.eps
    )
    return torch.relu(x + y)


def _module(channels: int = 8, **kw: object) -> Hamburger:
    torch.manual_seed(0)
    m = Hamburger(channels, **kw).to(D).eval()
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-0.5, 0.5)
    return m


@pytest.mark.parametrize("kw", [{"rank": 3}, {"rank": 5, "groups": 2, "eval_steps": 2},
                                {"rank": 4, "eval_steps": 0}])  # fmt: skip
def test_matches_float64_reference(kw: dict) -> None:
    m = _module(**kw)
    x = torch.randn(2, 8, 5, 6, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_one_step_gradient_matches_the_reference() -> None:
    m = _module(rank=4)
    x = torch.randn(2, 8, 4, 5, dtype=D, requires_grad=True)
    grad = torch.randn(2, 8, 4, 5, dtype=D)
    ours = torch.autograd.grad(m(x), [x, m.ham_in.weight], grad)
    ref = torch.autograd.grad(reference(m, x), [x, m.ham_in.weight], grad)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_updates_keep_the_factors_non_negative_and_fit_better() -> None:
    m = _module(16, rank=4)
    x = torch.rand(1, 16, 6, 6, dtype=D)
    feat = torch.relu(m.ham_in(x))
    errors = []
    for steps in (0, 3, 10):
        m.eval_steps = steps
        bases, coef = m._decompose(feat)
        assert (bases >= 0).all() and (coef >= 0).all()
        errors.append((feat.reshape(16, 36) - bases[0] @ coef[0].t()).norm().item())
    assert errors[0] > errors[1] > errors[2]


def test_training_draws_fresh_bases_and_evaluation_the_fixed_ones() -> None:
    m = _module(rank=4)
    x = torch.randn(2, 8, 4, 4, dtype=D)
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))
    fixed = Hamburger(8, rank=4, rand_init=False).to(D).train()
    fixed.load_state_dict(m.state_dict())
    assert torch.equal(fixed(x), fixed(x))


def test_autocast_keeps_the_decomposition_in_float32() -> None:
    m = Hamburger(16, rank=4).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bases, coef = m._decompose(torch.rand(2, 16, 4, 4))
        out = m(torch.randn(2, 16, 4, 4))
    assert bases.dtype == coef.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("groups,training", [(1, False), (2, True)])
def test_macs_match_flop_counter(groups: int, training: bool) -> None:
    m = Hamburger(16, rank=5, groups=groups, train_steps=3, eval_steps=2).train(training)
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 5, 7))
    assert counter.get_total_flops() == 2 * m.macs(5, 7)
    n, t = 35, 3 if training else 2
    step = 2 * n * 16 * 5 + 2 * groups * n * 25 + 2 * 16 * 25
    last = n * 16 * 5 + groups * n * 25 + 16 * 25
    assert m.macs(5, 7) == 2 * n * 256 + n * 16 * 5 + t * step + last + n * 16 * 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="groups"):
        Hamburger(10, groups=3)
