"""Float64 building blocks for the reference tests of the zoo's newer modules, written
as plain matrix algebra on one sample (C, N) at a time, independent of modules/."""

from __future__ import annotations

import math

import torch
from torch import nn

D = torch.float64


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv on (C, N) columns: W x + b."""
    out = conv.weight.detach().to(D)[:, :, 0, 0] @ x
    if conv.bias is not None:
        out = out + conv.bias.detach().to(D)[:, None]
    return out


def bn_eval(bn: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
    """BatchNorm with running statistics on (C, N) columns."""
    mean, var = bn.running_mean.to(D)[:, None], bn.running_var.to(D)[:, None]
    scale = bn.weight.detach().to(D)[:, None] / torch.sqrt(var + bn.eps)
    return (y - mean) * scale + bn.bias.detach().to(D)[:, None]


def conv_bn_relu(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """(1x1 conv, BN, ReLU) on (C, N) columns, BN in eval form."""
    return bn_eval(block[1], pointwise(block[0], x)).clamp_min(0)


def softmax(e: torch.Tensor, dim: int) -> torch.Tensor:
    e = (e - e.max(dim=dim, keepdim=True).values).exp()
    return e / e.sum(dim=dim, keepdim=True)


def adaptive_pool_matrix(h: int, w: int, s: int) -> torch.Tensor:
    """(s*s, h*w): row (i, j) averages rows floor(i h / s) .. ceil((i+1) h / s) - 1 and the
    same for columns, the cells of an adaptive average pool."""
    rows = []
    for i in range(s):
        r0, r1 = (i * h) // s, math.ceil((i + 1) * h / s)
        for j in range(s):
            c0, c1 = (j * w) // s, math.ceil((j + 1) * w / s)
            cell = torch.zeros(h, w, dtype=D)
            cell[r0:r1, c0:c1] = 1.0 / ((r1 - r0) * (c1 - c0))
            rows.append(cell.flatten())
    return torch.stack(rows)


def randomise_norms(module: nn.Module) -> None:
    """Random affine and running statistics for every BN and LayerNorm of `module`."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.running_mean.uniform_(-0.5, 0.5)
                sub.running_var.uniform_(0.5, 2.0)
            if isinstance(sub, nn.BatchNorm2d | nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.uniform_(-0.5, 0.5)


def conv2d_reference(weight: torch.Tensor, x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """A k x k convolution of (Cin, H, W) by (Cout, Cin, k, k), zero padding `pad` (before,
    after) on both axes, as k*k shifted channel products; no bias."""
    cin, h, w = x.shape
    k = weight.shape[-1]
    before, after = pad
    padded = torch.zeros(cin, h + before + after, w + before + after, dtype=x.dtype)
    padded[:, before : before + h, before : before + w] = x
    out = 0
    for di in range(k):
        for dj in range(k):
            window = padded[:, di : di + h, dj : dj + w]
            out = out + torch.einsum("oc,chw->ohw", weight[:, :, di, dj].to(x.dtype), window)
    return out
