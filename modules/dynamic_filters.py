"""Dynamic convolutional modules (DCM) of DMNet, one per filter size, fused by a 3x3 conv.

Paper: "Dynamic Multi-scale Filters for Semantic Segmentation", He, Deng, Qiao
(ICCV 2019; no arXiv version: openaccess.thecvf.com,
He_Dynamic_Multi-Scale_Filters_for_Semantic_Segmentation_ICCV_2019_paper).

For each filter size k, with Ci = C // reduction and cbr(.) a 1x1 conv (no bias),
BN and ReLU:

    F   = W_f AvgPool_k(x) + b_f                (Ci, k, k) one depthwise filter per
                                                channel, generated from this image
    r   = cbr_in(x)                             (Ci, H, W)
    z   = ReLU(BN(F (*) r))                     depthwise k x k convolution, zero padding
                                                keeping the size (an even k pads one more
                                                row and column at the top and left)
    z   = cbr_fus(z)                            when fusion
    out = cbr3x3([x; z_1; ...; z_L])            3x3 conv C + L Ci -> C

W_f is a 1x1 conv C -> Ci with bias. Defaults: filter_sizes=(1, 3, 5, 7),
fusion=False, reduction=1 (each branch as wide as the input: mmseg's DMHead gives
every DCM the head's 512 channels). No attention weights: attention_maps returns
{}. No zero-initialised gate; the module is not the identity at initialisation.

The one-input interface: mmseg's DMHead reads the backbone's 2048-channel feature
with its DCMs and its 3x3 bottleneck; here they read the shared head's reduced
C-channel feature, and the bottleneck maps back to C (the shared head then applies
its own 3x3 project conv, which mmseg's DMHead does not have).

MACs for one sample, N = H * W, summed over the filter sizes k:
    k^2 * C * Ci + N * C * Ci       the filter generator and cbr_in
    + N * Ci * k^2                  the dynamic depthwise convolution, for k > 1
                                    (at k = 1 a per-channel scale, computed and
                                    counted as an elementwise product)
    (+ N * Ci * Ci)                 cbr_fus, when fusion
plus 9 * N * (C + L * Ci) * C for the 3x3 bottleneck. Pools, BN and ReLU are not
counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicFilters"]


def _cbr(cin: int, cout: int, kernel_size: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


def _depthwise(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """x (B, Ci, H, W) convolved with its own image's filters (B, Ci, k, k), per channel."""
    b, ci, h, w = x.shape
    k = filters.shape[-1]
    if k == 1:  # a per-channel scale: as a product it skips the grouped conv's setup
        return x * filters  # (B, Ci, H, W)
    before, after = k // 2, (k - 1) // 2  # an even k pads one more at the top and left
    padded = F.pad(x, (before, after, before, after)).reshape(1, b * ci, h + k - 1, w + k - 1)
    # oneDNN's depthwise backward is faster channels-last at the larger sizes, its forward
    # alone slower: the layout is switched only when a backward will follow.
    if k >= 5 and torch.is_grad_enabled() and (x.requires_grad or filters.requires_grad):
        padded = padded.contiguous(memory_format=torch.channels_last)
    # Every (image, channel) pair is one group: each image convolves with its own filters.
    out = F.conv2d(padded, filters.reshape(-1, 1, k, k), groups=b * ci)
    return out.reshape(b, ci, h, w)


class DynamicConvolution(nn.Module):
    """One DCM: (B, C, H, W) -> (B, Ci, H, W) with k x k filters generated per image."""

    def __init__(self, channels: int, inner: int, size: int, fusion: bool) -> None:
        super().__init__()
        self.size = size
        self.generate = nn.Conv2d(channels, inner, 1)
        self.reduce = _cbr(channels, inner)
        self.norm = nn.BatchNorm2d(inner)
        self.fusion = _cbr(inner, inner) if fusion else None

    def forward(self, x: torch.Tensor, reduced: torch.Tensor | None = None) -> torch.Tensor:
        """`reduced`: cbr_in's conv of x, (B, Ci, H, W), when the caller computed it."""
        k = self.size
        filters = self.generate(F.adaptive_avg_pool2d(x, k))  # (B, Ci, k, k)
        conv, norm, relu = self.reduce
        reduced = relu(norm(conv(x) if reduced is None else reduced))  # (B, Ci, H, W)
        out = F.relu(self.norm(_depthwise(reduced, filters)))  # (B, Ci, H, W)
        return out if self.fusion is None else self.fusion(out)


class DynamicFilters(nn.Module):
    """DMNet's DCMs at several filter sizes and their 3x3 fusion: (B, C, H, W) -> same."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = None  # no attention weights
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        filter_sizes: tuple[int, ...] = (1, 3, 5, 7),
        fusion: bool = False,
        reduction: int = 1,
    ) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"reduction must be in [1, channels]; got {reduction}, {channels=}")
        if not filter_sizes or min(filter_sizes) < 1:
            raise ValueError(f"filter_sizes must be positive sizes; got {filter_sizes}")
        self.channels = channels
        self.inner = inner = channels // reduction
        self.filter_sizes = tuple(filter_sizes)
        self.fusion = fusion
        self.branches = nn.ModuleList(
            DynamicConvolution(channels, inner, k, fusion) for k in self.filter_sizes
        )
        self.bottleneck = _cbr(channels + len(self.filter_sizes) * inner, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Every branch's cbr_in conv in one 1x1 conv with the weights stacked: the same
        # function and MACs, but x is read once and its gradient comes from one product.
        weight = torch.cat([branch.reduce[0].weight for branch in self.branches])
        reduced = F.conv2d(x, weight).split(self.inner, dim=1)  # L x (B, Ci, H, W)
        outs = [branch(x, r) for branch, r in zip(self.branches, reduced, strict=True)]
        return self.bottleneck(torch.cat([x, *outs], dim=1))  # (B, C, H, W)

    def open_gate(self) -> None:
        """No zero-initialised gate: nothing to open."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()

    def macs(self, height: int, width: int) -> int:
        n, c, ci = height * width, self.channels, self.inner
        total = 9 * n * (c + len(self.filter_sizes) * ci) * c
        for k in self.filter_sizes:
            total += k * k * c * ci + n * c * ci + (n * ci * k * k if k > 1 else 0)
            total += n * ci * ci if self.fusion else 0
        return total

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{}: dynamic filters weigh neighbours by position offset, not by content pairs."""
        return {}
