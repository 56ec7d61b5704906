"""DoubleAttention against an independent float64 reference of the A^2 block."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modules.double_attention import DoubleAttention

D = torch.float64


def _affine(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """1x1 conv on (C, N) written as a matrix product."""
    return conv.weight.detach().to(D)[:, :, 0, 0] @ x + conv.bias.detach().to(D)[:, None]


def _softmax(t: torch.Tensor, dim: int) -> torch.Tensor:
    e = (t - t.max(dim=dim, keepdim=True).values).exp()
    return e / e.sum(dim=dim, keepdim=True)


def reference(m: DoubleAttention, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """out, Z, gather and distribute maps per the SPEC, one sample at a time."""
    _, c, h, w = x.shape
    out, zs, gathers, dists = [], [], [], []
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)  # (C, N)
        a = _affine(m.phi, xf)  # (c_m, N)
        bm = _affine(m.theta, xf)  # (c_n, N)
        v = _affine(m.rho, xf)  # (c_n, N)
        if m.gather == "softmax":
            gmap = _softmax(bm, dim=1)  # over positions
        else:
            r = _softmax(bm, dim=0)  # over the c_n descriptors
            gmap = r / (1e-6 + r.sum(dim=1, keepdim=True))
        g = a @ gmap.t()  # (c_m, c_n)
        dmap = _softmax(v, dim=0)  # (c_n, N)
        z = g @ dmap  # (c_m, N)
        out.append(xb + _affine(m.out_conv, z).reshape(c, h, w))
        zs.append(z.reshape(-1, h, w))
        gathers.append(gmap.reshape(-1, h, w))
        dists.append(dmap.reshape(-1, h, w))
    return {
        "out": torch.stack(out),
        "z": torch.stack(zs),
        "gather": torch.stack(gathers),
        "distribute": torch.stack(dists),
    }


def _randomised(channels: int = 12, **kw: object) -> DoubleAttention:
    m = DoubleAttention(channels, **kw).to(D)
    with torch.no_grad():  # W starts at zero: give it weights so the test sees Z
        m.out_conv.weight.normal_(0, 0.5)
        m.out_conv.bias.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("gather", ["softmax", "responsibility"])
@pytest.mark.parametrize("c_m,c_n", [(None, None), (5, 7)])
def test_matches_float64_reference(gather: str, c_m: int | None, c_n: int | None) -> None:
    torch.manual_seed(0)
    m = _randomised(c_m=c_m, c_n=c_n, gather=gather)
    x = torch.randn(2, 12, 5, 7, dtype=D) * 2
    ref = reference(m, x)
    torch.testing.assert_close(m(x), ref["out"], rtol=0, atol=1e-10)
    torch.testing.assert_close(m.context(x), ref["z"], rtol=0, atol=1e-10)


def test_gather_softmax_runs_over_positions() -> None:
    torch.manual_seed(1)
    m = _randomised(gather="softmax")
    x = torch.randn(3, 12, 4, 6, dtype=D)
    maps = m.attention_maps(x)
    ones = torch.ones(3, m.c_n, dtype=D)
    torch.testing.assert_close(maps["gather"].sum(dim=(2, 3)), ones)  # per sample, per channel
    torch.testing.assert_close(maps["distribute"].sum(dim=1), torch.ones(3, 4, 6, dtype=D))
    # Softmax over channels would also make the per-position sums 1; it must not here.
    assert not torch.allclose(maps["gather"].sum(dim=1), torch.ones(3, 4, 6, dtype=D))


def test_responsibility_gather_normalisation() -> None:
    torch.manual_seed(2)
    m = _randomised(gather="responsibility")
    x = torch.randn(2, 12, 4, 5, dtype=D)
    g = m.attention_maps(x)["gather"]  # (B, c_n, H, W)
    r = torch.softmax(m.theta(x), dim=1)  # (B, c_n, H, W), responsibilities over descriptors
    ratio = (g / r).flatten(2)  # one constant per (sample, descriptor): 1 / sum_N r
    torch.testing.assert_close(ratio, ratio[:, :, :1].expand_as(ratio), rtol=1e-12, atol=0)
    torch.testing.assert_close(g.sum(dim=(2, 3)), torch.ones(2, m.c_n, dtype=D), atol=1e-6, rtol=0)


def test_identity_at_init() -> None:
    x = torch.randn(2, 12, 4, 5)
    torch.testing.assert_close(DoubleAttention(12)(x), x)


def test_defaults_and_bad_gather() -> None:
    m = DoubleAttention(32)
    assert (m.c_m, m.c_n, m.gather) == (8, 8, "softmax")
    with pytest.raises(ValueError, match="gather"):
        DoubleAttention(8, gather="channels")


@pytest.mark.parametrize("gather", ["softmax", "responsibility"])
def test_attention_maps(gather: str) -> None:
    torch.manual_seed(3)
    m = _randomised(c_n=5, gather=gather)
    x = torch.randn(2, 12, 3, 4, dtype=D)
    before = m(x)
    maps = m.attention_maps(x, (0, 0))
    assert set(maps) == {"gather", "distribute"}
    assert maps["gather"].shape == maps["distribute"].shape == (2, 5, 3, 4)
    ref = reference(m, x)
    torch.testing.assert_close(maps["gather"], ref["gather"], rtol=0, atol=1e-12)
    torch.testing.assert_close(maps["distribute"], ref["distribute"], rtol=0, atol=1e-12)
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("height", "width", "order_macs"),
    [
        (5, 7, 16 * 3 * (6 + 35)),  # W first: (W G) D
        (1, 1, 1 * 6 * (3 + 16)),  # distribution first: W (G D)
    ],
)
def test_macs_match_flop_counter(height: int, width: int, order_macs: int) -> None:
    m = DoubleAttention(16, c_m=6, c_n=3)
    x = torch.randn(1, 16, height, width)
    with FlopCounterMode(display=False) as counter:
        m(x)
    n = height * width
    assert counter.get_total_flops() == 2 * m.macs(height, width)
    assert m.macs(height, width) == n * 16 * (6 + 6) + n * 6 * 3 + order_macs
