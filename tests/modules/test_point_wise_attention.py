"""PSA against an independent float64 reference written from the paper's formulas,
position pair by position pair (no gather, no cached index)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from modules.point_wise_attention import PointwiseSpatialAttention, shrunk_size

D = torch.float64


def _cbr(block: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """(1x1 conv, eval BN, ReLU) of (C, ...) positions-last x, by hand."""
    conv, bn = block[0], block[1]
    y = torch.einsum("oc,c...->o...", conv.weight.detach().to(D)[:, :, 0, 0], x)
    shape = (-1,) + (1,) * (y.dim() - 1)
    y = (y - bn.running_mean.to(D).view(shape)) / torch.sqrt(
        bn.running_var.to(D).view(shape) + bn.eps
    )
    return (y * bn.weight.detach().to(D).view(shape) + bn.bias.detach().to(D).view(shape)).relu()


def _weights(m, head, feat: torch.Tensor, direction: str) -> torch.Tensor:
    """A[p_src, p_dst] over the shrunk positions: the weight of p_src in p_dst's sum."""
    _, h, w = feat.shape
    mh, mw = m.mask_size
    hh, hw = (mh - 1) // 2, (mw - 1) // 2
    masks = torch.einsum(
        "oc,chw->ohw", head[1].weight.detach().to(D)[:, :, 0, 0], _cbr(head[0], feat)
    )
    pos = [(i, j) for i in range(h) for j in range(w)]
    logits = torch.zeros(len(pos), len(pos), dtype=D)  # [q, p]: offset q - p, predicted at p
    for a, p in enumerate(pos):
        for b, q in enumerate(pos):
            oh, ow = q[0] - p[0] + hh, q[1] - p[1] + hw
            if 0 <= oh < mh and 0 <= ow < mw:
                logits[b, a] = masks[oh * mw + ow, p[0], p[1]]
    if direction == "collect":  # p gathers from every q: normalise over q
        weights = logits.softmax(dim=0) if m.psa_softmax else logits
        return weights  # [q = source, p = destination]
    weights = logits.softmax(dim=1) if m.psa_softmax else logits  # q receives: over p
    return weights.t()  # [p = source, q = destination]


def reference(m: PointwiseSpatialAttention, x: torch.Tensor) -> torch.Tensor:
    _, _, height, width = x.shape
    h, w, align = shrunk_size(height, width, m.shrink_factor)
    outs = []
    for xb in x.to(D):
        zs = []
        for reduce, head, direction in (
            (m.reduce_collect, m.attention_collect, "collect"),
            (m.reduce_distribute, m.attention_distribute, "distribute"),
        ):
            feat = F.interpolate(_cbr(reduce, xb)[None], size=(h, w), mode="bilinear",
                                 align_corners=align)[0]  # fmt: skip
            a = _weights(m, head, feat, direction)  # (n_src, n_dst)
            zs.append(feat.reshape(feat.shape[0], -1) @ a / m.normalization_factor)
        z = _cbr(m.proj, torch.cat(zs).reshape(-1, h, w))
        z = F.interpolate(z[None], size=(height, width), mode="bilinear", align_corners=align)[0]
        outs.append(_cbr(m.fuse, torch.cat([xb, z])))
    return torch.stack(outs)


def _randomised(channels: int = 6, **kw: object) -> PointwiseSpatialAttention:
    m = PointwiseSpatialAttention(channels, **kw).to(D).eval()
    with torch.no_grad():
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize(
    "size,kw",
    [
        ((9, 7), {}),  # both odd: (5, 4), align_corners; the whole map inside the window
        ((8, 7), {"mask_size": (5, 3)}),  # (4, 3); pairs outside the window keep logit 0
        ((6, 10), {"mask_size": (4, 6), "reduction": 2}),  # even window sides
        ((5, 6), {"shrink_factor": 1, "psa_softmax": False, "normalization_factor": 30.0}),
        ((1, 1), {}),
    ],
)
def test_matches_float64_reference(size: tuple[int, int], kw: dict) -> None:
    torch.manual_seed(0)
    m = _randomised(**kw)
    x = torch.randn(2, 6, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x), rtol=0, atol=1e-10)


def test_gradients_match_the_reference() -> None:
    torch.manual_seed(1)
    m = _randomised(mask_size=(5, 5))
    x = torch.randn(2, 6, 7, 8, dtype=D, requires_grad=True)
    grad = torch.randn(2, 6, 7, 8, dtype=D)
    ours = torch.autograd.grad(m(x), x, grad)[0]
    ref = torch.autograd.grad(reference(m, x), x, grad)[0]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


def test_attention_maps_are_the_query_rows() -> None:
    torch.manual_seed(2)
    m = _randomised(shrink_factor=1)
    x = torch.randn(1, 6, 4, 5, dtype=D)
    maps = m.attention_maps(x, (1, 3))
    feat = _cbr(m.reduce_collect, x[0])
    collect = _weights(m, m.attention_collect, feat, "collect")[:, 1 * 5 + 3]
    torch.testing.assert_close(maps["collect"].reshape(-1), collect, rtol=0, atol=1e-12)
    feat = _cbr(m.reduce_distribute, x[0])
    distribute = _weights(m, m.attention_distribute, feat, "distribute")[:, 1 * 5 + 3]
    torch.testing.assert_close(maps["distribute"].reshape(-1), distribute, rtol=0, atol=1e-12)
    torch.testing.assert_close(maps["collect"].sum(), torch.tensor(1.0, dtype=D))


@pytest.mark.parametrize("size,mask", [((9, 7), (97, 97)), ((12, 16), (5, 7)), ((1, 11), (3, 3))])
def test_macs_match_flop_counter(size: tuple[int, int], mask: tuple[int, int]) -> None:
    m = PointwiseSpatialAttention(8, mask_size=mask, reduction=2).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 8, *size))
    assert counter.get_total_flops() == 2 * m.macs(*size)
    h, w, _ = shrunk_size(*size, 2)
    r = min(2 * h - 1, mask[0]) * min(2 * w - 1, mask[1])
    big, n = size[0] * size[1], h * w
    expected = 2 * big * 8 * 4 + 2 * n * 16 + 2 * n * 4 * r + 2 * n * n * 4 + n * 8 * 8
    assert m.macs(*size) == expected + big * 16 * 8


def test_shrunk_size_follows_mmseg() -> None:
    assert shrunk_size(65, 65, 2) == (33, 33, True)
    assert shrunk_size(64, 65, 2) == (32, 32, False)
    assert shrunk_size(1, 6, 2) == (1, 3, False)  # would be 0 rows: kept at 1
    assert shrunk_size(7, 9, 1) == (7, 9, False)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="mask_size"):
        PointwiseSpatialAttention(8, mask_size=(0, 3))
