"""Ours and the mmseg/mmcv peer formulation (peers.py) compute the same function, in
float64, forward and backward, in eval and in train mode. Not timed.

    pytest tests/benchmarks/test_peer_agreement.py

(tests/benchmarks is left out of the default run; this file runs in seconds.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from pairing import _open_gates
from peers import PEERS

import modules

# The newer modules; the six's peers are checked (in float32) by the timed benchmark.
SIX = {"nonlocal", "a2", "ccnet", "isa", "danet", "ema"}
# ham's gradient is the one-step gradient where mmseg's unrolls every NMF step, and in
# training both sides draw random bases: test_peers_agree.py checks it on those terms.
NAMES = sorted(set(PEERS) - SIX - {"ham"})


def _step(forward, module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = forward(module, x)
    out.backward(grad)
    params = {k: p.grad for k, p in module.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, params


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_ours_equals_the_peer_in_float64(name: str, training: bool) -> None:
    torch.manual_seed(0)
    module = modules.build(name, 32).double()
    _open_gates(module)
    with torch.no_grad():  # BN running statistics away from (0, 1)
        for sub in module.modules():
            if isinstance(sub, torch.nn.BatchNorm2d):
                sub.running_mean.uniform_(-0.5, 0.5)
                sub.running_var.uniform_(0.5, 2.0)
    module.train(training)
    x = torch.randn(2, 32, 13, 11, dtype=torch.float64)
    grad = torch.randn_like(x)
    ours = _step(lambda m, t: m(t), copy.deepcopy(module), x, grad)
    peer = _step(PEERS[name], copy.deepcopy(module), x, grad)
    torch.testing.assert_close(ours[0], peer[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours[1], peer[1], rtol=0, atol=1e-12)
    assert ours[2].keys() == peer[2].keys()
    for key, value in ours[2].items():
        torch.testing.assert_close(value, peer[2][key], rtol=1e-10, atol=1e-11, msg=key)
