"""Ours and mmseg's formulation (peers_psa_ham.py) compute the same function, in float64.

Not timed; collected with the other benchmarks (`pytest tests/benchmarks -k agree`).
"""

from __future__ import annotations

import pytest
import torch
from peers import PEERS

import modules

D = torch.float64


def _built(name: str, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    module = modules.build(name, 16, **kw).to(D)
    with torch.no_grad():  # BN statistics off their defaults, so eval mode is not trivial
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.parametrize(
    "size,kw", [((12, 10), {}), ((9, 7), {"mask_size": (5, 7)}), ((13, 16), {"mask_size": (8, 6)})]
)
@pytest.mark.parametrize("training", [False, True])
def test_psa_is_mmseg_psahead(size: tuple[int, int], kw: dict, training: bool) -> None:
    module = _built("psa", **kw).train(training)
    x = torch.randn(2, 16, *size, dtype=D, requires_grad=True)
    grad = torch.randn(2, 16, *size, dtype=D)
    ours = module(x)
    peer = PEERS["psa"](module, x)
    torch.testing.assert_close(ours, peer, rtol=0, atol=1e-12)
    ours_grad = torch.autograd.grad(ours, [x, *module.parameters()], grad)
    peer_grad = torch.autograd.grad(peer, [x, *module.parameters()], grad)
    for a, b in zip(ours_grad, peer_grad, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_ham_is_mmseg_hamburger(training: bool, groups: int) -> None:
    module = _built("ham", rank=6, groups=groups).train(training)
    x = torch.randn(2, 16, 7, 9, dtype=D)
    torch.manual_seed(5)  # training draws the initial bases: the same draw on both sides
    ours = module(x)
    torch.manual_seed(5)
    torch.testing.assert_close(ours, PEERS["ham"](module, x), rtol=0, atol=1e-10)


def test_ham_keeps_the_one_step_gradient_where_mmseg_differentiates_every_step() -> None:
    module = _built("ham", rank=6).eval()
    x = torch.randn(1, 16, 6, 6, dtype=D, requires_grad=True)
    grad = torch.randn(1, 16, 6, 6, dtype=D)
    ours = torch.autograd.grad(module(x), x, grad)[0]
    peer = torch.autograd.grad(PEERS["ham"](module, x), x, grad)[0]
    assert not torch.allclose(ours, peer)
