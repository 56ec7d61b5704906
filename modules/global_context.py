"""Global context block (GCNet's ContextBlock).

Paper: "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
Cao, Xu, Lin, Wei, Hu (arXiv 1904.11492).

With X the input as a (C, N) matrix, N = H * W, Cp = int(C * ratio):

    a   = softmax_j(W_k x_j)                       (N,)   one weight per position
    ctx = sum_j a_j x_j                            (C,)   the same for every position
    t   = W_2 ReLU(LN(W_1 ctx + b_1)) + b_2        (C,)   bottleneck transform
    out_i = x_i + t                                        channel-wise addition

W_k: 1x1 conv C -> 1 without bias (the attention pooling); W_1: 1x1 C -> Cp; LN
normalises over the Cp channels with a learnable affine; W_2: 1x1 Cp -> C, weight and bias
initialised to 0 (the paper's zero-init of the last layer), so the block is the
identity at initialisation. Defaults: ratio = 1/4 (mmseg's GCHead and the paper's
segmentation setting; the paper's ImageNet blocks use 1/16), attention pooling and
channel addition, the paper's best fusion.

MACs for one sample:

    N * C        W_k
    + N * C      the weighted sum over positions
    + 2 * C * Cp the bottleneck (one vector, not N)

(softmax, LN, ReLU and the broadcast addition are not counted; the addition is
N * C, of the order of the rest, because the block's matrix work is itself linear.)

Deviations: none in the function. mmcv's ContextBlock (which mmseg's GCHead wraps)
gives W_k a bias, which adds the same constant to every logit of a softmax and so
changes nothing (its gradient is 0); here W_k has none. mmcv initialises W_k with
Kaiming (fan-in); here it keeps nn.Conv2d's default initialisation. The paper's
average-pooling and channel-multiplication variants are not offered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GlobalContext"]


class GlobalContext(nn.Module):
    """Attention-pooled global context added to every position: (B, C, H, W) -> same."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "pooling"  # the attention-pooling weights (one map per image)
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, ratio: float = 0.25) -> None:
        super().__init__()
        planes = int(channels * ratio)
        if planes < 1:
            raise ValueError(f"ratio * channels must be >= 1; got ratio={ratio}, {channels=}")
        self.channels = channels
        self.planes = planes
        self.mask = nn.Conv2d(channels, 1, 1, bias=False)
        self.in_conv = nn.Conv2d(channels, planes, 1)
        self.norm = nn.LayerNorm([planes, 1, 1])
        self.out_conv = nn.Conv2d(planes, channels, 1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def _pooling(self, x: torch.Tensor) -> torch.Tensor:
        # The mask conv (C -> 1, 1x1) as an einsum over channels: the same function, and
        # on a CPU about twice as fast forward and backward as a one-channel convolution.
        logits = torch.einsum("c,bcn->bn", self.mask.weight.view(-1), x.flatten(2))
        return torch.softmax(logits, dim=-1)  # (B, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weights = self._pooling(x)  # (B, N)
        context = torch.bmm(x.reshape(b, c, -1), weights.unsqueeze(-1))  # (B, C, 1)
        term = self.in_conv(context.view(b, c, 1, 1))  # (B, Cp, 1, 1)
        term = self.out_conv(F.relu(self.norm(term)))  # (B, C, 1, 1)
        return x + term

    def open_gate(self) -> None:
        """Start W_2 at nn.Conv2d's default initialisation instead of zero (the fairness
        ablation)."""
        self.out_conv.reset_parameters()

    def gates(self) -> tuple[nn.Parameter, ...]:
        """W_2's weight and bias: the paper starts the last layer at 0."""
        return (self.out_conv.weight, self.out_conv.bias)

    def macs(self, height: int, width: int) -> int:
        n, c = height * width, self.channels
        return 2 * n * c + 2 * c * self.planes

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"pooling": (B, 1, H, W)}: the softmax weights of the context pooling. Every
        position receives the same context, so the map does not depend on `query`."""
        return {"pooling": self._pooling(x).view(x.shape[0], 1, *x.shape[2:])}
