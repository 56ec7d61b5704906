"""pool: the global-pooling control, against a float64 reference of its formula."""

from __future__ import annotations

import torch

import modules
from modules.global_pool import GlobalPool


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """out = x + ReLU(W mean_N(x) + b), written per sample and channel in float64."""
    b, c, h, w = x.shape
    out = x.clone()
    for i in range(b):
        mean = [x[i, k].sum() / (h * w) for k in range(c)]
        for o in range(c):
            z = bias[o] + sum(weight[o, k] * mean[k] for k in range(c))
            out[i, o] += torch.relu(z)
    return out


def test_matches_the_float64_reference() -> None:
    torch.manual_seed(0)
    block = GlobalPool(6).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    expected = reference(x, block.conv.weight[:, :, 0, 0], block.conv.bias)
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_keeps_counts_where_a_softmax_average_would_not() -> None:
    """Two marked positions move the output twice as far as one: the mean is not normalised."""
    block = GlobalPool(1).double()
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.conv.bias.zero_()
    one, two = (
        torch.zeros(1, 1, 4, 4, dtype=torch.float64),
        torch.zeros(1, 1, 4, 4, dtype=torch.float64),
    )
    one[0, 0, 0, 0] = 1.0
    two[0, 0, 0, 0] = two[0, 0, 3, 3] = 1.0
    shift_one = block(one)[0, 0, 1, 1]
    shift_two = block(two)[0, 0, 1, 1]
    assert shift_two == 2 * shift_one > 0


def test_registered_with_its_formula_for_macs() -> None:
    block = modules.build("pool", 8)
    assert isinstance(block, GlobalPool)
    assert block.macs(3, 5) == 8 * 8  # the matrix part only, as for every module
