"""DANet dual attention against a float64 matrix-algebra reference written from the paper."""

from __future__ import annotations

import pytest
import torch

from modules.dual_attention import DualAttention, _softmax_without_subnormals


def _pointwise(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution with bias as a matrix product over channels."""
    weight = conv.weight.detach()[:, :, 0, 0]  # (O, C)
    return torch.einsum("oc,bchw->bohw", weight, x) + conv.bias.detach().view(1, -1, 1, 1)


def _conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution (zero padding 1, no bias) as nine shifted channel products."""
    height, width = x.shape[2:]
    padded = torch.zeros(x.shape[0], x.shape[1], height + 2, width + 2, dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    out = 0
    for di in range(3):
        for dj in range(3):
            window = padded[:, :, di : di + height, dj : dj + width]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, di, dj], window)
    return out


def _batch_norm(y: torch.Tensor, bn: torch.nn.BatchNorm2d, training: bool) -> torch.Tensor:
    if training:  # batch statistics, biased variance
        mean = y.mean(dim=(0, 2, 3))
        var = y.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight.detach() / torch.sqrt(var + bn.eps)
    return (y - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + bn.bias.detach().view(
        1, -1, 1, 1
    )


def _conv_bn_relu(x: torch.Tensor, block: torch.nn.Sequential, training: bool) -> torch.Tensor:
    conv, bn = block[0], block[1]
    return _batch_norm(_conv3x3(x, conv.weight.detach()), bn, training).clamp_min(0)


def _pam(x: torch.Tensor, module: DualAttention) -> torch.Tensor:
    out = torch.empty_like(x)
    q, k, v = (_pointwise(x, c) for c in (module.query, module.key, module.value))
    for b in range(x.shape[0]):
        qm, km, vm = q[b].flatten(1), k[b].flatten(1), v[b].flatten(1)  # (C', N), (C', N), (C, N)
        energy = qm.T @ km  # (N, N): row i = query i, no scaling
        attention = torch.softmax(energy, dim=1)
        out[b] = (module.gamma_position.detach() * (vm @ attention.T)).view_as(x[b]) + x[b]
    return out


def _cam_attention(xm: torch.Tensor) -> torch.Tensor:
    energy = xm @ xm.T  # (C, C)
    rowmax = energy.max(dim=1, keepdim=True).values
    return torch.softmax(rowmax - energy, dim=1)


def _cam(x: torch.Tensor, module: DualAttention) -> torch.Tensor:
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        xm = x[b].flatten(1)  # (C, N)
        context = _cam_attention(xm) @ xm
        out[b] = (module.gamma_channel.detach() * context).view_as(x[b]) + x[b]
    return out


def _reference(x: torch.Tensor, module: DualAttention, training: bool) -> torch.Tensor:
    position = _conv_bn_relu(_pam(x, module), module.position_conv, training)
    channel = _conv_bn_relu(_cam(x, module), module.channel_conv, training)
    return position + channel


def _module(channels: int = 16, reduction: int = 4) -> DualAttention:
    torch.manual_seed(0)
    module = DualAttention(channels, reduction=reduction).double()
    with torch.no_grad():
        module.gamma_position.fill_(0.8)
        module.gamma_channel.fill_(-0.6)
        for bn in (module.position_conv[1], module.channel_conv[1]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return module


# Training-mode BN on (1, C, 1, 1) has one value per channel, which torch refuses; B = 2 here.
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("size", [(5, 6), (1, 7), (3, 1), (1, 1)])
def test_matches_reference(training: bool, size: tuple[int, int]) -> None:
    module = _module()
    module.train(training)
    x = torch.randn(2, 16, *size, dtype=torch.double)
    expected = _reference(x, module, training)  # before forward: train mode moves running stats
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-10)


def test_default_reduction() -> None:
    module = DualAttention(32)
    assert module.query.out_channels == 4 and module.key.out_channels == 4
    assert module.value.out_channels == 32
    assert module.gamma_position.item() == 0 and module.gamma_channel.item() == 0


def test_channel_attention_uses_rowmax_minus_energy() -> None:
    """The official CAM weighs the least similar channels most: softmax(-X X^T)."""
    module = _module()
    x = torch.randn(2, 16, 4, 5, dtype=torch.double)
    channel = module.attention_maps(x)["channel"]
    for b in range(2):
        xm = x[b].flatten(1)
        torch.testing.assert_close(channel[b], _cam_attention(xm), rtol=0, atol=1e-12)
        torch.testing.assert_close(channel[b], torch.softmax(-(xm @ xm.T), dim=1))
        # A channel's own energy is its row's largest, so it gets its row's smallest weight.
        assert torch.equal(channel[b].argmin(dim=1), torch.arange(16))


def test_attention_maps() -> None:
    module = _module()
    x = torch.randn(2, 16, 5, 6, dtype=torch.double)
    module.eval()
    before = module(x)
    maps = module.attention_maps(x, (1, 4))
    assert set(maps) == {"position", "channel"}
    assert maps["position"].shape == (2, 1, 5, 6)
    assert maps["channel"].shape == (2, 16, 16)
    torch.testing.assert_close(maps["position"].sum(dim=(1, 2, 3)), torch.ones(2).double())
    torch.testing.assert_close(maps["channel"].sum(dim=2), torch.ones(2, 16).double())
    q, k = _pointwise(x, module.query), _pointwise(x, module.key)
    for b in range(2):
        energy = q[b, :, 1, 4] @ k[b].flatten(1)  # (N,)
        expected = torch.softmax(energy, dim=0).view(5, 6)
        torch.testing.assert_close(maps["position"][b, 0], expected, rtol=0, atol=1e-12)
    assert torch.equal(module(x), before)
    default = module.attention_maps(x)["position"]
    assert torch.equal(default, module.attention_maps(x, (2, 3))["position"])


def test_attention_maps_leave_training_state_alone() -> None:
    module = _module().train()
    x = torch.randn(2, 16, 4, 4, dtype=torch.double)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.attention_maps(x)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())


def test_macs_formula() -> None:
    module = DualAttention(16, reduction=8)
    n, c, ci = 4 * 6, 16, 2
    expected = n * c * (2 * ci + c) + n * n * (ci + c) + 2 * n * c * c + 2 * 9 * n * c * c
    assert module.macs(4, 6) == expected


def test_invalid_reduction() -> None:
    with pytest.raises(ValueError):
        DualAttention(4, reduction=8)


def test_channel_branch_stays_float32_under_autocast() -> None:
    """X X^T over N positions overflows float16; the CAM must not follow autocast down."""
    module = _module().float().eval()
    x = torch.randn(2, 16, 12, 12) * 30  # energies of order 1e5, beyond float16's range
    expected = module.attention_maps(x)["channel"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module.attention_maps(x)["channel"]
        out = module(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    assert torch.isfinite(out).all()


def _subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)


def test_channel_softmax_and_its_gradient_have_no_subnormals() -> None:
    """CAM's softmax underflows on ordinary inputs; subnormals make CPU products slow."""
    torch.manual_seed(5)
    flat = torch.randn(2, 64, 576)
    energy = flat @ flat.transpose(1, 2)
    energy = (energy.amax(dim=-1, keepdim=True) - energy).requires_grad_(True)
    grad = torch.randn(2, 64, 64)
    plain = torch.softmax(energy, dim=-1)
    plain.backward(grad)
    assert _subnormal(plain).any() and _subnormal(energy.grad).any()  # the case arises
    plain_grad, energy.grad = energy.grad, None
    flushed = _softmax_without_subnormals(energy)
    flushed.backward(grad)
    assert not _subnormal(flushed).any() and not _subnormal(energy.grad).any()
    torch.testing.assert_close(flushed, plain, rtol=1e-6, atol=1e-18)
    torch.testing.assert_close(energy.grad, plain_grad, rtol=1e-5, atol=1e-6)  # rounding
    weights = DualAttention(64).attention_maps(flat.view(2, 64, 24, 24))["channel"]
    assert torch.equal(weights, flushed.detach())  # the module uses it
