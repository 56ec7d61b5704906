"""CCNet criss-cross attention against a float64 per-position reference written from the paper."""

from __future__ import annotations

import pytest
import torch

from modules.criss_cross import CrissCrossAttention


def _pointwise(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution as a matrix product: (B, C, H, W) -> (B, O, H, W)."""
    weight = conv.weight.detach()[:, :, 0, 0]  # (O, C)
    return torch.einsum("oc,bchw->bohw", weight, x) + conv.bias.detach().view(1, -1, 1, 1)


def _reference_pass(x: torch.Tensor, module: CrissCrossAttention) -> torch.Tensor:
    """One criss-cross pass, looping over positions and listing each one's keys explicitly."""
    batch, _, height, width = x.shape
    q, k, v = (_pointwise(x, conv) for conv in (module.query, module.key, module.value))
    gamma = module.gamma.detach()
    out = torch.empty_like(x)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                # Row i (all W positions, the centre included), then column j without the centre.
                keys = [(i, jj) for jj in range(width)]
                keys += [(ii, j) for ii in range(height) if ii != i]
                assert keys.count((i, j)) == 1
                energies = torch.stack([q[b, :, i, j] @ k[b, :, r, c] for r, c in keys])
                weights = torch.softmax(energies, dim=0)
                context = sum(w * v[b, :, r, c] for w, (r, c) in zip(weights, keys, strict=True))
                out[b, :, i, j] = gamma * context + x[b, :, i, j]
    return out


def _reference(x: torch.Tensor, module: CrissCrossAttention) -> torch.Tensor:
    for _ in range(module.recurrence):
        x = _reference_pass(x, module)
    return x


def _module(channels: int = 8, reduction: int = 2, recurrence: int = 2) -> CrissCrossAttention:
    torch.manual_seed(0)
    module = CrissCrossAttention(channels, reduction=reduction, recurrence=recurrence).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
    return module


@pytest.mark.parametrize("recurrence", [1, 2])
@pytest.mark.parametrize("size", [(5, 6), (4, 3), (1, 5), (4, 1), (1, 1)])
def test_matches_reference(recurrence: int, size: tuple[int, int]) -> None:
    module = _module(recurrence=recurrence)
    x = torch.randn(2, 8, *size, dtype=torch.double)
    out = module(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _reference(x, module), rtol=0, atol=1e-10)


def test_default_reduction_and_recurrence() -> None:
    module = CrissCrossAttention(16)
    assert module.query.out_channels == 2 and module.key.out_channels == 2
    assert module.value.out_channels == 16 and module.recurrence == 2
    with torch.no_grad():
        module.gamma.fill_(-0.4)
    module.double()
    x = torch.randn(1, 16, 3, 4, dtype=torch.double)
    torch.testing.assert_close(module(x), _reference(x, module), rtol=0, atol=1e-10)


def test_identity_at_init() -> None:
    module = CrissCrossAttention(16)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(module(x), x)


@pytest.mark.parametrize("size", [(1, 4), (4, 1), (1, 1)])
def test_degenerate_column_or_row_has_finite_gradients(size: tuple[int, int]) -> None:
    module = _module()
    x = torch.randn(2, 8, *size, dtype=torch.double, requires_grad=True)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_attention_map_is_the_criss_cross() -> None:
    module = _module()
    x = torch.randn(2, 8, 5, 6, dtype=torch.double)
    before = module(x)
    for query in [(2, 3), (0, 0), (4, 5)]:
        maps = module.attention_maps(x, query)
        assert set(maps) == {"criss_cross"}
        att = maps["criss_cross"]
        assert att.shape == (2, 1, 5, 6)
        row, col = query
        cross = torch.zeros(5, 6, dtype=torch.bool)
        cross[row, :] = True
        cross[:, col] = True
        assert (att[:, 0][:, ~cross] == 0).all()
        assert (att[:, 0][:, cross] > 0).all()
        torch.testing.assert_close(att.sum(dim=(1, 2, 3)), torch.ones(2, dtype=torch.double))
        # Same weights as the reference's softmax for that position.
        q, k = _pointwise(x, module.query), _pointwise(x, module.key)
        keys = [(row, c) for c in range(6)] + [(r, col) for r in range(5) if r != row]
        for b in range(2):
            energies = torch.stack([q[b, :, row, col] @ k[b, :, r, c] for r, c in keys])
            expected = torch.softmax(energies, dim=0)
            got = torch.stack([att[b, 0, r, c] for r, c in keys])
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert torch.equal(module(x), before)


def test_attention_map_default_query_is_centre() -> None:
    module = _module()
    x = torch.randn(1, 8, 5, 7, dtype=torch.double)
    assert torch.equal(
        module.attention_maps(x)["criss_cross"], module.attention_maps(x, (2, 3))["criss_cross"]
    )


def test_macs_formula() -> None:
    module = CrissCrossAttention(16, reduction=8, recurrence=2)
    n, c, inner, h, w = 5 * 7, 16, 2, 5, 7
    assert module.macs(5, 7) == 2 * (n * c * (2 * inner + c) + n * (h + w) * (inner + c))
    assert CrissCrossAttention(16, recurrence=1).macs(5, 7) * 2 == module.macs(5, 7)


def test_invalid_hyper_parameters() -> None:
    with pytest.raises(ValueError):
        CrissCrossAttention(4, reduction=8)
    with pytest.raises(ValueError):
        CrissCrossAttention(16, recurrence=0)
