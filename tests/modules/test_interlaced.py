"""ISA against a float64 reference that loops over groups and blocks, written from the paper.

The reference pads the map itself, computes the pointwise layers on the whole
padded map (1x1 convs and BN act per position, so BN statistics in training
are over every padded position of the batch, as when the module folds groups
into the batch), and runs attention group by group and block by block.
"""

from __future__ import annotations

import math

import pytest
import torch

from modules.interlaced import InterlacedSparseAttention


def _batch_norm(y: torch.Tensor, bn: torch.nn.BatchNorm2d, training: bool) -> torch.Tensor:
    if training:
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight.detach() / torch.sqrt(var + bn.eps)
    shift = bn.bias.detach() - mean * scale
    return y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _linear(y: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A bias-free 1x1 convolution as a matrix product over channels."""
    assert conv.bias is None
    return torch.einsum("oc,bchw->bohw", conv.weight.detach()[:, :, 0, 0], y)


def _stack(y: torch.Tensor, layers: torch.nn.Sequential, training: bool) -> torch.Tensor:
    """Run (conv, BN, ReLU) triples in order."""
    for i in range(0, len(layers), 3):
        y = _batch_norm(_linear(y, layers[i]), layers[i + 1], training).clamp_min(0)
    return y


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention among n positions: q, k (Ck, n), v (C, n) -> (C, n)."""
    weights = torch.softmax(q.T @ k / math.sqrt(q.shape[0]), dim=1)  # (n, n), row = query
    return v @ weights.T


def _self_attention(
    y: torch.Tensor, block: torch.nn.Module, training: bool, groups: list[list[tuple[int, int]]]
) -> torch.Tensor:
    """The block's attention within each group of (row, col) cells: (B, C, Hp, Wp) -> same."""
    q, k = _stack(y, block.query, training), _stack(y, block.key, training)
    v = _linear(y, block.value)
    context = torch.zeros_like(v)
    for b in range(y.shape[0]):
        for cells in groups:
            rows = torch.tensor([r for r, _ in cells])
            cols = torch.tensor([c for _, c in cells])
            context[b][:, rows, cols] = _attend(
                q[b][:, rows, cols], k[b][:, rows, cols], v[b][:, rows, cols]
            )
    return _stack(context, block.out, training)


def _reference(x: torch.Tensor, module: InterlacedSparseAttention, training: bool) -> torch.Tensor:
    batch, channels, height, width = x.shape
    ph, pw = module.down_factor
    hp, wp = math.ceil(height / ph) * ph, math.ceil(width / pw) * pw
    top, left = (hp - height) // 2, (wp - width) // 2  # the odd pixel goes after
    padded = torch.zeros(batch, channels, hp, wp, dtype=x.dtype)
    padded[:, :, top : top + height, left : left + width] = x
    # Long range: for every offset (a, b) inside a block, the positions (a + i*Ph, b + j*Pw).
    long_groups = [
        [(r, c) for r in range(a, hp, ph) for c in range(b, wp, pw)]
        for a in range(ph)
        for b in range(pw)
    ]
    # Short range: every Ph x Pw block.
    short_groups = [
        [(r, c) for r in range(i * ph, (i + 1) * ph) for c in range(j * pw, (j + 1) * pw)]
        for i in range(hp // ph)
        for j in range(wp // pw)
    ]
    # Both are partitions of the padded map.
    every = sorted((r, c) for r in range(hp) for c in range(wp))
    assert sorted(cell for g in long_groups for cell in g) == every
    assert sorted(cell for g in short_groups for cell in g) == every
    context = _self_attention(padded, module.long_range, training, long_groups)
    context = _self_attention(context, module.short_range, training, short_groups)
    context = context[:, :, top : top + height, left : left + width]
    return _stack(torch.cat([x, context], dim=1), module.fuse, training)


def _module(channels: int = 8, **kwargs: object) -> InterlacedSparseAttention:
    torch.manual_seed(0)
    module = InterlacedSparseAttention(channels, **kwargs).double()
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.3)
                bn.running_mean.normal_(0, 0.3)
                bn.running_var.uniform_(0.5, 1.5)
    return module


CASES = [
    # (size, down_factor): padded on both axes, padded on one, not padded, odd padding, 1x1.
    ((13, 17), 4),
    ((13, 17), (3, 4)),
    ((12, 8), [3, 4]),
    ((7, 5), (2, 3)),
    ((1, 1), (2, 2)),
]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(("size", "down_factor"), CASES)
def test_matches_reference(training: bool, size: tuple[int, int], down_factor) -> None:
    module = _module(down_factor=down_factor, key_channels=3).train(training)
    x = torch.randn(2, 8, *size, dtype=torch.double)
    expected = _reference(x, module, training)  # before forward: train mode moves running stats
    out = module(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_defaults() -> None:
    module = InterlacedSparseAttention(16)
    assert module.down_factor == (8, 8) and module.key_channels == 8
    assert InterlacedSparseAttention(16, down_factor=4).down_factor == (4, 4)
    assert InterlacedSparseAttention(16, down_factor=[2, 5]).down_factor == (2, 5)
    module.double().eval()
    x = torch.randn(1, 16, 10, 9, dtype=torch.double)
    torch.testing.assert_close(module(x), _reference(x, module, False), rtol=0, atol=1e-10)


def test_padding_takes_part_in_attention() -> None:
    """As in the official code, zeros added by padding change what real pixels see."""
    module = _module(down_factor=4, key_channels=3).eval()
    x = torch.randn(1, 8, 6, 8, dtype=torch.double)  # pads 6 -> 8 rows, nothing on columns
    inner = module(x)
    # The same pixels with real data (not zeros) where the padding would go.
    framed = torch.randn(1, 8, 8, 8, dtype=torch.double)
    framed[:, :, 1:7] = x
    outer = module(framed)[:, :, 1:7]
    assert not torch.allclose(inner, outer)


@pytest.mark.parametrize(("size", "down_factor"), [((13, 17), (3, 4)), ((8, 8), 4)])
def test_attention_maps(size: tuple[int, int], down_factor) -> None:
    module = _module(down_factor=down_factor)
    ph, pw = module.down_factor
    height, width = size
    top = (math.ceil(height / ph) * ph - height) // 2
    left = (math.ceil(width / pw) * pw - width) // 2
    x = torch.randn(2, 8, *size, dtype=torch.double)
    for training in (False, True):
        module.train(training)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        before = module(x) if not training else None
        for row, col in [(0, 0), (height // 2, width // 2), (height - 1, width - 1)]:
            maps = module.attention_maps(x, (row, col))
            assert set(maps) == {"long_range", "short_range"}
            r, c = row + top, col + left
            rows = torch.arange(height).view(-1, 1) + top
            cols = torch.arange(width).view(1, -1) + left
            same_group = ((rows - r) % ph == 0) & ((cols - c) % pw == 0)
            same_block = (rows // ph == r // ph) & (cols // pw == c // pw)
            for name, support in (("long_range", same_group), ("short_range", same_block)):
                att = maps[name]
                assert att.shape == (2, 1, height, width)
                assert (att[:, 0][:, ~support] == 0).all()
                assert (att[:, 0][:, support] > 0).all()
                total = att.sum(dim=(1, 2, 3))
                assert (total <= 1 + 1e-12).all()
                if (height % ph, width % pw) == (0, 0):
                    torch.testing.assert_close(total, torch.ones(2, dtype=torch.double))
        assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
        if not training:
            assert torch.equal(module(x), before)


def test_macs_counts_padded_sizes() -> None:
    module = InterlacedSparseAttention(16, down_factor=(3, 4), key_channels=8)
    c, ck, n = 16, 8, 13 * 17
    hp, wp = 15, 20
    n_pad, groups = hp * wp, 5 * 5
    per_block = 2 * (n_pad * c * ck + n_pad * ck * ck) + n_pad * c * c + n_pad * c * c
    attention = n_pad * groups * (ck + c) + n_pad * 12 * (ck + c)
    assert module.macs(13, 17) == 2 * per_block + attention + n * 2 * c * c


@pytest.mark.parametrize(
    "kwargs",
    [
        {"down_factor": 0},
        {"down_factor": (2, 3, 4)},
        {"down_factor": (2.0, 3)},
        {"key_channels": 0},
    ],
)
def test_invalid_hyper_parameters(kwargs) -> None:
    with pytest.raises(ValueError):
        InterlacedSparseAttention(8, **kwargs)
