"""Compact generalized non-local block (CGNL), dot-product kernel.

Paper: "Compact Generalized Non-local Network", Yue, Sun, Yuan, Zhou, Ding, Xu
(arXiv 1810.13125).

    t, p, g = 1x1 convs C -> Ci without bias          (B, Ci, N) each, Ci = C // reduction
    split the Ci channels into G groups of c = Ci / G; per group, the attention runs over
    every (channel, position) pair of the group at once, and with the dot-product kernel
    it factorises:
        y_k = t_k * sum_j p_j g_j     (j, k over the c*N entries of the group)
    so the group's c*N x c*N attention matrix is never formed.
    out = x + GN(z(y)),   z: 1x1 Ci -> C, grouped (G groups), no bias; GN with G groups

use_scale divides sum_j p_j g_j by sqrt(c*N). Defaults: reduction=2, groups=8,
use_scale=False (the authors' SpatialCGNL in their ResNets: planes = inplanes // 2,
groups 8, no scale). groups falls back to the largest divisor of Ci and C not above it.

MACs for one sample, N = H*W:
    3*N*C*Ci (t, p, g) + N*Ci (the G dot products) + N*Ci*C/G (z)
The scaling of t by each group's scalar, GN and the residual are lower order and not counted.

Initialisation as the authors' ResNets do it for the block: t, p, g and z from a
Gaussian of std 0.01, the GN's weight and bias at 0, so the block starts as the
identity; open_gate starts the GN's weight at 1.

Deviations from the authors' code (KaiyuYue/cgnl-network.pytorch, SpatialCGNL): none in
the arithmetic (only the dot-product kernel; their Gaussian RBF kernel by Taylor
expansion, SpatialCGNLx, is not built). It has no position-by-position map:
attention_maps returns none.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CompactNonLocal(nn.Module):
    """CGNL block (dot-product kernel): (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = None
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self, channels: int, *, reduction: int = 2, groups: int = 8, use_scale: bool = False
    ) -> None:
        super().__init__()
        if reduction < 1 or groups < 1:
            raise ValueError(f"CGNL needs reduction, groups >= 1, got {reduction}, {groups}")
        self.channels = channels
        self.inter_channels = ci = max(channels // reduction, 1)
        self.groups = max(g for g in range(1, groups + 1) if ci % g == 0 and channels % g == 0)
        self.use_scale = use_scale
        self.t = nn.Conv2d(channels, ci, 1, bias=False)
        self.p = nn.Conv2d(channels, ci, 1, bias=False)
        self.g = nn.Conv2d(channels, ci, 1, bias=False)
        self.z = nn.Conv2d(ci, channels, 1, groups=self.groups, bias=False)
        self.gn = nn.GroupNorm(self.groups, channels)
        for conv in (self.t, self.p, self.g, self.z):
            nn.init.normal_(conv.weight, 0.0, 0.01)
        nn.init.zeros_(self.gn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weight = torch.cat([self.t.weight, self.p.weight, self.g.weight])
        t, p, g = nn.functional.conv2d(x, weight).chunk(3, dim=1)  # (B, Ci, H, W) each
        per_group = (b, self.groups, -1)
        att = torch.einsum("bgk,bgk->bg", p.reshape(per_group), g.reshape(per_group))  # (B, G)
        if self.use_scale:
            att = att * (1.0 / math.sqrt(self.inter_channels // self.groups * h * w))
        y = (t.reshape(per_group) * att[:, :, None]).view_as(t)
        return x + self.gn(self.z(y))

    def open_gate(self) -> None:
        """Start the GN's weight at 1 instead of 0."""
        with torch.no_grad():
            self.gn.weight.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """gn.weight: the authors start it at 0."""
        return (self.gn.weight,)

    def macs(self, height: int, width: int) -> int:
        n, c, ci = height * width, self.channels, self.inter_channels
        return 3 * n * c * ci + n * ci + n * ci * c // self.groups

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{}: the dot-product kernel weighs every position alike (one scalar a group)."""
        return {}
