"""OCR (object-contextual representations) against a float64 reference from the paper."""

from __future__ import annotations

import pytest
import torch
from reference_ops import D, conv_bn_relu, pointwise, randomise_norms, softmax
from torch.utils.flop_counter import FlopCounterMode

from modules.object_context import ObjectContext


def reference(m: ObjectContext, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """out (B, C, H, W), soft regions (B, K, N), relation (B, N, K); BN in eval form."""
    outs, regions, relations = [], [], []
    for xb in x.to(D):
        c, h, w = xb.shape
        xf = xb.reshape(c, h * w)
        r = softmax(pointwise(m.region_head, xf), dim=1)  # (K, N), each region sums to 1
        f = xf @ r.T  # (C, K)
        q = conv_bn_relu(m.query[1], conv_bn_relu(m.query[0], xf))  # (Co, N)
        k = conv_bn_relu(m.key[1], conv_bn_relu(m.key[0], f))  # (Co, K)
        v = conv_bn_relu(m.value, f)  # (Co, K)
        rel = softmax(q.T @ k / m.key_channels**0.5, dim=1)  # (N, K)
        y = conv_bn_relu(m.out, v @ rel.T)  # (C, N)
        outs.append(conv_bn_relu(m.fuse, torch.cat([y, xf])).reshape(c, h, w))
        regions.append(r)
        relations.append(rel)
    return torch.stack(outs), torch.stack(regions), torch.stack(relations)


def _module(channels: int = 8, **kw: object) -> ObjectContext:
    torch.manual_seed(0)
    m = ObjectContext(channels, **kw).to(D).eval()
    randomise_norms(m)
    return m


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (3, 1)])
@pytest.mark.parametrize("regions", [1, 5, 21])
def test_matches_float64_reference(size: tuple[int, int], regions: int) -> None:
    m = _module(regions=regions)
    x = torch.randn(2, 8, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)


def test_defaults() -> None:
    m = ObjectContext(32)
    assert m.regions == 21 and m.key_channels == 16
    assert m.region_head.out_channels == 21
    assert m.gates() == ()


def test_attention_maps() -> None:
    m = _module(regions=6)
    x = torch.randn(2, 8, 4, 5, dtype=D)
    state = {k: v.clone() for k, v in m.train().state_dict().items()}
    maps = m.attention_maps(x, (3, 1))
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    _, r, rel = reference(m.eval(), x)
    torch.testing.assert_close(maps["regions"].reshape(2, 6, -1), r, rtol=0, atol=1e-12)
    expected = (rel[:, 3 * 5 + 1, None, :] @ r)[:, 0]  # (B, N)
    torch.testing.assert_close(maps["object"].reshape(2, -1), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(maps["object"].sum(dim=(1, 2, 3)), torch.ones(2, dtype=D))


def test_macs_match_flop_counter() -> None:
    m = ObjectContext(16, regions=5, reduction=4).eval()
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, 16, 7, 6))
    assert counter.get_total_flops() == 2 * m.macs(7, 6)
    n, c, co, k = 42, 16, 4, 5
    expected = 2 * n * c * k + n * (c * co + co * co) + k * (2 * c * co + co * co)
    assert m.macs(7, 6) == expected + 2 * n * k * co + n * co * c + 2 * n * c * c


@pytest.mark.parametrize("kw", [{"regions": 0}, {"reduction": 0}, {"reduction": 9}])
def test_bad_settings_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        ObjectContext(8, **kw)
