"""NonLocal against an independent float64 reference of the embedded-Gaussian block."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from attnbench.measure.memory import cpu_peak_bytes
from modules.non_local import NonLocal

D = torch.float64


def _w(conv: torch.nn.Conv2d) -> torch.Tensor:
    return conv.weight.detach().to(D)[:, :, 0, 0]


def _pool2x2(t: torch.Tensor) -> torch.Tensor:
    """(c, H, W) -> (Ci, ceil(H/2)*ceil(W/2)): max over each 2x2 window, partial at edges."""
    _, h, w = t.shape
    cells = [
        t[:, i : i + 2, j : j + 2].amax(dim=(1, 2)) for i in range(0, h, 2) for j in range(0, w, 2)
    ]
    return torch.stack(cells, dim=1)


def reference(m: NonLocal, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out (B, C, H, W) and attention (B, N, Nk), written from the SPEC; BN in eval form."""
    _, c, h, w = x.shape
    ci = _w(m.theta).shape[0]
    s = ci**-0.5 if m.use_scale else 1.0
    bn = m.out_bn
    outs, attns = [], []
    for xb in x.to(D):
        xf = xb.reshape(c, h * w)  # (C, N)
        theta = _w(m.theta) @ xf + m.theta.bias.detach().to(D)[:, None]  # (Ci, N)
        kv_in = _pool2x2(xb.to(D)) if m.pool_input else xf  # Caffe2: pool the input
        phi = _w(m.phi) @ kv_in + m.phi.bias.detach().to(D)[:, None]  # (Ci, N or Nk)
        g = _w(m.g) @ kv_in + m.g.bias.detach().to(D)[:, None]
        if m.sub_sample and not m.pool_input:
            phi = _pool2x2(phi.reshape(ci, h, w))  # (Ci, Nk)
            g = _pool2x2(g.reshape(ci, h, w))
        e = (theta.t() @ phi) * s  # (N, Nk)
        e = (e - e.max(dim=1, keepdim=True).values).exp()
        a = e / e.sum(dim=1, keepdim=True)
        y = a @ g.t()  # (N, Ci)
        z = _w(m.out_conv) @ y.t()  # (C, N)
        mean, var = bn.running_mean.to(D)[:, None], bn.running_var.to(D)[:, None]
        z = (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.detach().to(D)[:, None]
        z = z + bn.bias.detach().to(D)[:, None]
        outs.append(xb + z.reshape(c, h, w))
        attns.append(a)
    return torch.stack(outs), torch.stack(attns)


def _randomised(channels: int = 8, **kw: object) -> NonLocal:
    m = NonLocal(channels, **kw).to(D).eval()
    with torch.no_grad():
        m.out_bn.weight.uniform_(0.5, 1.5)  # gamma starts at 0: make the block non-trivial
        m.out_bn.bias.uniform_(-0.5, 0.5)
        m.out_bn.running_mean.uniform_(-0.5, 0.5)
        m.out_bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize(
    "sub_sample,use_scale,use_sdpa", list(itertools.product([False, True], repeat=3))
)
def test_matches_float64_reference(sub_sample: bool, use_scale: bool, use_sdpa: bool) -> None:
    torch.manual_seed(0)
    m = _randomised(sub_sample=sub_sample, use_scale=use_scale, use_sdpa=use_sdpa)
    x = torch.randn(2, 8, 5, 7, dtype=D)
    expected, _ = reference(m, x)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_pool_input_matches_float64_reference(use_sdpa: bool) -> None:
    torch.manual_seed(6)
    m = _randomised(sub_sample=True, pool_input=True, use_sdpa=use_sdpa)
    x = torch.randn(2, 8, 5, 7, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)
    # Pooling before phi and g is another function than pooling after them.
    after = _randomised(sub_sample=True, use_sdpa=use_sdpa)
    after.load_state_dict(m.state_dict())
    assert not torch.allclose(after(x), m(x))


def test_pool_input_needs_sub_sample() -> None:
    with pytest.raises(ValueError, match="sub_sample"):
        NonLocal(8, pool_input=True)


def test_init_std_is_the_caffe2_initialisation() -> None:
    torch.manual_seed(7)
    m = NonLocal(256, init_std=0.01)
    for conv in (m.theta, m.phi, m.g, m.out_conv):
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert conv.bias is None or not conv.bias.any()
    default = NonLocal(256)
    assert default.theta.bias.any() and default.theta.weight.std().item() > 0.02


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (3, 3)])
@pytest.mark.parametrize("pool_input", [False, True])
def test_sub_sample_on_thin_inputs(size: tuple[int, int], pool_input: bool) -> None:
    torch.manual_seed(1)
    m = _randomised(sub_sample=True, pool_input=pool_input)
    x = torch.randn(2, 8, *size, dtype=D)
    torch.testing.assert_close(m(x), reference(m, x)[0], rtol=0, atol=1e-10)


def test_scale_value() -> None:
    assert NonLocal(16, reduction=2).scale == pytest.approx(8**-0.5)
    assert NonLocal(16, use_scale=False).scale == 1.0


@pytest.mark.parametrize("sub_sample,use_scale", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_sdpa_equals_explicit(
    sub_sample: bool, use_scale: bool, dtype: torch.dtype, tol: float
) -> None:
    torch.manual_seed(2)
    m = _randomised(16, sub_sample=sub_sample, use_scale=use_scale).to(dtype)
    x = torch.randn(2, 16, 6, 9, dtype=dtype) * 3  # larger energies: sharper softmax
    m.use_sdpa = False
    explicit = m(x)
    m.use_sdpa = True
    torch.testing.assert_close(m(x), explicit, rtol=0, atol=tol)


def test_identity_at_init() -> None:
    x = torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(NonLocal(8).eval()(x), x)


@pytest.mark.parametrize("sub_sample", [False, True])
def test_attention_maps(sub_sample: bool) -> None:
    torch.manual_seed(3)
    m = _randomised(sub_sample=sub_sample)
    x = torch.randn(2, 8, 5, 7, dtype=D)
    before = m(x)
    query = (1, 4)
    maps = m.attention_maps(x, query)
    assert set(maps) == {"attention"}
    att = maps["attention"]
    assert att.shape == (2, 1, 5, 7)
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)
    _, a = reference(m, x)
    row = a[:, query[0] * 7 + query[1]]  # (B, Nk)
    if sub_sample:
        # Pixel (i, j) shows the weight of the pooled key (i // 2, j // 2).
        idx = [(i // 2) * 4 + j // 2 for i in range(5) for j in range(7)]
        row = row[:, idx]
    else:
        torch.testing.assert_close(att.sum(dim=(1, 2, 3)), torch.ones(2, dtype=D))
    torch.testing.assert_close(att.reshape(2, -1), row, rtol=0, atol=1e-12)
    default = m.attention_maps(x)["attention"]  # query defaults to the centre
    torch.testing.assert_close(default, m.attention_maps(x, (2, 3))["attention"])


@pytest.mark.parametrize("sub_sample,pool_input", [(False, False), (True, False), (True, True)])
def test_macs_match_flop_counter(sub_sample: bool, pool_input: bool) -> None:
    # torch's counter does not see SDPA's CPU kernel: count the explicit form of the block.
    m = NonLocal(16, reduction=4, sub_sample=sub_sample, pool_input=pool_input, use_sdpa=False)
    x = torch.randn(1, 16, 7, 5)
    with FlopCounterMode(display=False) as counter:
        m.eval()(x)
    assert counter.get_total_flops() == 2 * m.macs(7, 5)
    nk = math.ceil(7 / 2) * math.ceil(5 / 2) if sub_sample else 35
    projections = (35 + 2 * nk) * 16 * 4 if pool_input else 3 * 35 * 16 * 4
    assert m.macs(7, 5) == projections + 2 * 35 * nk * 4 + 35 * 4 * 16


def test_sdpa_is_the_default() -> None:
    assert NonLocal(8).use_sdpa


@pytest.mark.parametrize("sub_sample", [False, True])
def test_sdpa_equals_explicit_under_bf16_autocast(sub_sample: bool) -> None:
    torch.manual_seed(4)
    # Eval mode: training BN divides by the batch spread of W_z y, which can be small
    # enough to magnify bf16 rounding without bound.
    m = _randomised(32, sub_sample=sub_sample).float()
    x = torch.randn(2, 32, 12, 11)
    outs = {}
    for use_sdpa in (False, True):
        m.use_sdpa = use_sdpa
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs[use_sdpa] = m(x).float()
    # bf16 keeps 8 bits of mantissa: both paths round the same products differently.
    torch.testing.assert_close(outs[True], outs[False], rtol=0.01, atol=0.02)


def _saved_sizes(m: NonLocal, x: torch.Tensor) -> list[int]:
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x).sum().backward()
    return sizes


@pytest.mark.parametrize("sub_sample", [False, True])
def test_sdpa_saves_no_n_by_n_matrix(sub_sample: bool) -> None:
    """Pinned to CPU on purpose: there the fused kernel takes every float dtype."""
    m = NonLocal(16, sub_sample=sub_sample).train()
    x = torch.randn(2, 16, 24, 20, requires_grad=True)
    n, nk = 24 * 20, 12 * 10 if sub_sample else 24 * 20
    m.use_sdpa = False  # the control: the explicit path saves the (B, 1, N, Nk) weights
    assert max(_saved_sizes(m, x)) >= 2 * n * nk
    m.use_sdpa = True
    assert max(_saved_sizes(m, x)) < n * nk
    with profile() as prof:
        m(x).sum().backward()
    ops = {event.key for event in prof.key_averages()}
    assert "aten::_scaled_dot_product_attention_math" not in ops, ops


def test_sdpa_peak_memory_is_a_fraction_of_explicit() -> None:
    """Forward + backward at N = 4096 (one 4096 x 4096 float32 matrix is 64 MiB), CPU."""
    torch.manual_seed(5)
    m = NonLocal(32).train()
    x = torch.randn(1, 32, 64, 64, requires_grad=True)

    def step() -> None:
        m(x).sum().backward()

    peaks = {}
    for use_sdpa in (False, True):
        m.use_sdpa = use_sdpa
        peaks[use_sdpa] = cpu_peak_bytes(step)
    assert peaks[False] > 2 * 4096 * 4096 * 4  # the explicit path holds N x N matrices
    assert peaks[True] <= 0.1 * peaks[False], peaks
