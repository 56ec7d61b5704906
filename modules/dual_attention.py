"""Dual attention: position (PAM) and channel (CAM) attention of DANet.

Paper: "Dual Attention Network for Scene Segmentation", Fu et al.,
arXiv 1809.02983.

With X the input as a (C, N) matrix, N = H * W:

    PAM: Q, K = 1x1 conv C -> C' (C' = C // reduction), V = 1x1 conv C -> C
         A = softmax_j(Q^T K)  (N x N, no scaling)
         out_p = gamma_p * V A^T + X
    CAM: E = X X^T  (C x C, no convolutions)
         E' = rowmax(E) - E  (the official code's form; softmax then favours
              the least similar channels, kept as published)
         out_c = gamma_c * softmax_last(E') X + X
    out = (3x3 conv, BN, ReLU)(out_p) + (3x3 conv, BN, ReLU)(out_c)

Defaults: reduction=8; gamma_p and gamma_c are learnable scalars initialised
to 0. The two 3x3 branch convolutions (C -> C, no bias) are part of DANet's
head and belong to this module, so the block is NOT the identity at
initialisation: with gammas at 0 it is conv(x) + conv(x) of two different
conv-BN-ReLU stacks.

Multiply-accumulates for one sample, C' = C // reduction:

    MACs = N * C * (2 * C' + C)      q, k, v
         + N^2 * (C' + C)            PAM energies and weighted sum
         + 2 * N * C^2               CAM energies and weighted sum
         + 2 * 9 * N * C^2           the two 3x3 branch convolutions

(biases, BN, ReLU, softmax and residual adds are not counted.) q, k and v come
from one 1x1 conv with the three weights stacked: the same function and MACs,
but x is read once and its gradient comes from one product.

Deviations from the official code (github.com/junfu1115/DANet):
- The official head first reduces the backbone feature with two separate
  3x3 conv-BN-ReLU stacks (one per branch, to C/4); here one shared reduce
  conv of the common head feeds both branches, and the module runs on C.
- The official head also puts a dropout + 1x1 classifier on each branch
  (auxiliary outputs for extra losses); those are left out: the common
  head classifies the sum.
- The channel branch (energies, softmax, weighted sum) always runs in at
  least float32, autocast or not: X X^T sums over N positions and overflows
  float16 on ordinary feature maps. The PAM follows autocast as usual.
- CAM weights below sqrt(tiny) of the dtype (1e-19 in float32) are set to 0:
  the softmax over energies that span thousands underflows into subnormal
  floats, which made CPU products 17x slower; the output moves by less than
  1e-19 of a feature (see _softmax_without_subnormals).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DualAttention"]


def _conv_bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def _softmax_without_subnormals(energy: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, with the weights below sqrt(tiny) of the dtype set to 0.

    CAM's energies span thousands, so its softmax underflows: on random (2, 256, 48, 48)
    input 10 % of the weights land in the subnormal range, and on CPU every product
    they enter, forward and backward, ran 17x slower (subnormal arithmetic). A weight
    below sqrt(tiny) (1e-19 in float32) moves an output by less than 1e-19 of the largest
    feature; with it gone, neither the weights nor the gradient products (a weight times
    a gradient) become subnormal. GPUs flush subnormals anyway.
    """
    # Softmax is shift-invariant, so the shift needs no gradient.
    exp = torch.exp(energy - energy.amax(dim=-1, keepdim=True).detach())
    exp = torch.where(exp < torch.finfo(exp.dtype).tiny ** 0.5, 0.0, exp)
    return exp / exp.sum(dim=-1, keepdim=True)


class DualAttention(nn.Module):
    """Position and channel attention branches, each followed by a 3x3 conv-BN-ReLU, summed."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "position"  # the query's PAM weights
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(
                f"reduction must be in [1, channels]; got reduction={reduction}, "
                f"channels={channels}"
            )
        self.channels = channels
        self.reduction = reduction
        inner = channels // reduction
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma_position = nn.Parameter(torch.zeros(1))
        self.gamma_channel = nn.Parameter(torch.zeros(1))
        self.position_conv = _conv_bn_relu(channels)
        self.channel_conv = _conv_bn_relu(channels)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k (B, C', N) and v (B, C, N) from one 1x1 conv that reads x once."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        inner = self.query.out_channels
        return F.conv2d(x, weight, bias).flatten(2).split([inner, inner, self.channels], dim=1)

    @staticmethod
    def _position_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N), rows = queries

    def _position(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._project(x)
        attention = self._position_weights(q, k)  # (B, N, N)
        # (A V^T)^T, not V A^T: the latter hands softmax's backward a transposed N x N
        # gradient, which it copies before use.
        context = (attention @ v.transpose(1, 2)).transpose(1, 2).reshape(x.shape)
        return torch.addcmul(x, self.gamma_position, context), attention  # x + gamma * context

    def _channel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # X X^T sums over all N positions: in float16 it overflows (65504) on ordinary
        # feature maps, and rowmax - energy then gives inf - inf. Keep this branch in at
        # least float32 even under autocast.
        wide = x if x.dtype == torch.float64 else x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = wide.flatten(2)  # (B, C, N)
            energy = torch.bmm(flat, flat.transpose(1, 2))  # (B, C, C)
            energy = energy.amax(dim=-1, keepdim=True) - energy
            attention = _softmax_without_subnormals(energy)  # (B, C, C)
            context = torch.bmm(attention, flat).view_as(x)  # (B, C, H, W)
        return self.gamma_channel * context.to(x.dtype) + x, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_p, _ = self._position(x)
        out_c, _ = self._channel(x)
        return self.position_conv(out_p) + self.channel_conv(out_c)

    def open_gate(self) -> None:
        """Start both gammas at 1 instead of the paper's 0 (the fairness ablation)."""
        with torch.no_grad():
            self.gamma_position.fill_(1.0)
            self.gamma_channel.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """The two gammas: position and channel."""
        return (self.gamma_position, self.gamma_channel)

    def macs(self, height: int, width: int) -> int:
        n, c, inner = height * width, self.channels, self.channels // self.reduction
        return n * c * (2 * inner + c) + n * n * (inner + c) + 2 * n * c * c + 18 * n * c * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"position": (B, 1, H, W) the query's PAM weights, "channel": (B, C, C) CAM weights}."""
        batch, _, height, width = x.shape
        row, col = query if query is not None else (height // 2, width // 2)
        # Both maps come before the branch convolutions, so BN statistics are never touched.
        q, k, _ = self._project(x)
        position = self._position_weights(q, k)[:, row * width + col]  # (B, N)
        _, channel = self._channel(x)
        return {"position": position.view(batch, 1, height, width), "channel": channel}
