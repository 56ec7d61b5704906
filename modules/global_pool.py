"""Global-pooling context: a control beside the attention modules, not attention itself.

ParseNet: Looking Wider to See Better (Liu et al., arXiv 1506.04579), and the
image-pooling branch of DeepLabV3 (arXiv 1706.05587):

    out = x + ReLU(W mean_N(x) + b)      W: 1x1 conv C -> C with bias

broadcast over every position. Every position receives the same summary of the
whole image. The mean is not normalised per query, as an attention softmax is, so
it keeps how much of something the image holds: two red shapes give a larger
red-channel mean than one. There is no zero-initialised gate: W starts at the
default (Kaiming-uniform) initialisation of nn.Conv2d, so the branch contributes
from the first step. It is the control of the context probes: when `pool` solves a
probe and an attention module does not, the cue was reachable, and the module
either cannot use it or did not learn to in the budget.

Defaults: none. MACs per image: C^2, the 1x1 conv on one vector: like every module's
`macs`, the matrix part. The mean and the broadcast add (N*C elementwise operations
each) are left out; here, unlike in the attention modules, they are not negligible,
and outweigh the conv wherever N > C / 2.
Deviations: ParseNet L2-normalises and rescales the pooled vector before unpooling,
and DeepLabV3 adds BN and concatenates rather than adds; here the branch is added
to its input so that the block keeps the zoo's (B, C, H, W) -> same-shape contract.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalPool(nn.Module):
    """x + ReLU(conv1x1(mean over positions of x)), broadcast back to every position."""

    FROZEN: tuple[str, ...] = ()
    # Its map weighs every position 1/N for every query: nothing worth a figure.
    MAIN_MAP: str | None = None
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return x + torch.relu(self.conv(pooled))  # broadcast to (B, C, H, W)

    def open_gate(self) -> None:
        """No gate to open: the branch is on from the start."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()  # no zero-initialised gate

    def macs(self, height: int, width: int) -> int:
        return self.channels * self.channels  # the 1x1 conv on the pooled vector

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """The uniform weights of the mean: every position weighs 1/N for every query."""
        b, _, h, w = x.shape
        return {"mean": x.new_full((b, 1, h, w), 1.0 / (h * w))}  # (B, 1, H, W)
