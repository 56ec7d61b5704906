"""Adaptive context modules (ACM) of APCNet, one per pooling scale, fused by a 3x3 conv.

Paper: "Adaptive Pyramid Context Network for Semantic Segmentation", He, Deng,
Zhou, Wang, Qiao (CVPR 2019; no arXiv version: openaccess.thecvf.com,
He_Adaptive_Pyramid_Context_Network_for_Semantic_Segmentation_CVPR_2019_paper).

For each scale s (s^2 cells), with Ci = C // reduction and cbr(.) a 1x1
conv (no bias), BN and ReLU:

    r   = cbr_in(x)                                  (Ci, N)  reduced input
    P   = cbr_pool(AvgPool_s(x))                     (Ci, s^2) pooled cell features
    g   = cbr_glob(mean_i r_i)                       (Ci,)    global information
    A   = sigmoid(W_a (r_i + g) + b_a)               (N, s^2) adaptive affinities, 1x1 Ci -> s^2
    z_i = ReLU(cbr_res(sum_c A_ic P_c) + r_i)        (Ci, N)  context plus the residual
    z_i = cbr_fus(z_i)                               when fusion
    out = cbr3x3([x; z_1; ...; z_L])                 (C, N)   3x3 conv C + L Ci -> C

Defaults: pool_scales=(1, 2, 3, 6), fusion=True, reduction=1 (each branch as wide
as the input: mmseg's APCHead gives every ACM the head's 512 channels). The
affinities are not normalised (a sigmoid per cell, as the paper). No
zero-initialised gate; the module is not the identity at initialisation.

The one-input interface: mmseg's APCHead reads the backbone's 2048-channel feature
with its ACMs and its 3x3 bottleneck; here they read the shared head's reduced
C-channel feature, and the bottleneck maps back to C (the shared head then applies
its own 3x3 project conv, which mmseg's APCHead does not have).

MACs for one sample, N = H * W, per scale s (S = s^2) summed over the scales:
    N * C * Ci + S * C * Ci + Ci * Ci     cbr_in, cbr_pool, cbr_glob
    + 2 * N * Ci * S                      W_a and the affinity product
    + N * Ci * Ci (+ N * Ci * Ci)         cbr_res (and cbr_fus)
plus 9 * N * (C + L * Ci) * C for the 3x3 bottleneck. Pools, sigmoid, BN and ReLU
are not counted.

Deviation from mmseg's ACM, batch statistics only: a BN in training needs more
than one value per channel, so mmseg fails on a batch of one image at the 1 x 1
cells (scale 1 and the global information). Here such a map, and only then, is
normalised broadcast over H x W (the output is the same as normalising its B
values, which for B = 1 gives the BN's shift). mmseg upsamples the global
information bilinearly from 1 x 1, which is the same broadcast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptivePyramidContext"]


def _cbr(cin: int, cout: int, kernel_size: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


def _cells_cbr(block: nn.Sequential, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """cbr on a small map; one value per channel in training is normalised broadcast to size."""
    y = block[0](t)
    if block[1].training and y.shape[0] * y.shape[2] * y.shape[3] == 1:
        return block[2](block[1](y.expand(-1, -1, *size)))[:, :, :1, :1]
    return block[2](block[1](y))


class AdaptiveContext(nn.Module):
    """One ACM: (B, C, H, W) -> (B, Ci, H, W) at one pooling scale."""

    def __init__(self, channels: int, inner: int, scale: int, fusion: bool) -> None:
        super().__init__()
        self.scale = scale
        self.reduce = _cbr(channels, inner)
        self.pooled = _cbr(channels, inner)
        self.global_info = _cbr(inner, inner)
        self.affinity = nn.Conv2d(inner, scale * scale, 1)
        self.residual = _cbr(inner, inner)
        self.fusion = _cbr(inner, inner) if fusion else None

    def affinities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The affinities (B, N, s^2) and the reduced input r (B, Ci, H, W)."""
        size = x.shape[2:]
        reduced = self.reduce(x)
        glob = _cells_cbr(self.global_info, reduced.mean(dim=(2, 3), keepdim=True), size)
        logits = self.affinity(reduced + glob).flatten(2).transpose(1, 2)  # (B, N, s^2)
        return torch.sigmoid(logits), reduced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cells = _cells_cbr(self.pooled, F.adaptive_avg_pool2d(x, self.scale), (h, w))
        affinity, reduced = self.affinities(x)
        context = affinity @ cells.flatten(2).transpose(1, 2)  # (B, N, Ci)
        context = context.transpose(1, 2).reshape(b, -1, h, w)
        out = F.relu(self.residual(context) + reduced)
        return out if self.fusion is None else self.fusion(out)


class AdaptivePyramidContext(nn.Module):
    """APCNet's ACMs at several scales and their 3x3 fusion: (B, C, H, W) -> same."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "affinity"  # the query's affinities, spread over the cells' pixels
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        fusion: bool = True,
        reduction: int = 1,
    ) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"reduction must be in [1, channels]; got {reduction}, {channels=}")
        if not pool_scales or min(pool_scales) < 1:
            raise ValueError(f"pool_scales must be positive sizes; got {pool_scales}")
        self.channels = channels
        self.inner = inner = channels // reduction
        self.pool_scales = tuple(pool_scales)
        self.fusion = fusion
        self.branches = nn.ModuleList(
            AdaptiveContext(channels, inner, s, fusion) for s in self.pool_scales
        )
        self.bottleneck = _cbr(channels + len(self.pool_scales) * inner, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *(branch(x) for branch in self.branches)], dim=1))

    def open_gate(self) -> None:
        """No zero-initialised gate: nothing to open."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()

    def macs(self, height: int, width: int) -> int:
        n, c, ci = height * width, self.channels, self.inner
        total = 9 * n * (c + len(self.pool_scales) * ci) * c
        for s in self.pool_scales:
            total += n * c * ci + s * s * c * ci + ci * ci + 2 * n * ci * s * s
            total += n * ci * ci * (2 if self.fusion else 1)
        return total

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"affinity": (B, 1, H, W)}: the query pixel's affinity to every pooled cell, each
        spread evenly over the pixels the cell averages and summed over the scales (not
        normalised: a sigmoid per cell). BN in eval form; no state changes."""
        b, _, h, w = x.shape
        row, col = query if query is not None else (h // 2, w // 2)
        training = self.training
        self.eval()
        try:
            weights = [branch.affinities(x)[0][:, row * w + col] for branch in self.branches]
        finally:
            self.train(training)
        with torch.enable_grad():
            probe = torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device, requires_grad=True)
            total = sum(
                (F.adaptive_avg_pool2d(probe, s).flatten(1) * a).sum()
                for s, a in zip(self.pool_scales, weights, strict=True)
            )
            (spread,) = torch.autograd.grad(total, probe)
        return {"affinity": spread}
