"""Criss-cross attention, the recurrent RCCA module of CCNet.

Paper: "CCNet: Criss-Cross Attention for Semantic Segmentation", Huang et al.,
arXiv 1811.11721.

Each position attends to the positions of its own row (W of them, itself
included) and of its own column (H of them, itself excluded, so the centre is
counted once), with one softmax over those H + W energies:

    q, k = 1x1 conv C -> C' (C' = C // reduction), v = 1x1 conv C -> C
    a_(i,j) = softmax over {row i} + {column j minus (i, j)} of q_(i,j) . k_p
    out_(i,j) = gamma * sum_p a_(i,j),p v_p + x_(i,j)

The block is applied `recurrence` times with shared weights; two passes give
every position a path to every other one.

Defaults: reduction=8, recurrence=2; gamma is one learnable scalar
initialised to 0, so the block is the identity at initialisation.

Multiply-accumulates for one sample, N = H * W, C' = C // reduction, R = recurrence:

    MACs = R * (N * C * (2 * C' + C) + N * (H + W) * (C' + C))

(1x1 convolutions for q, k, v, then the row/column energies and the
weighted sums; biases, softmax and the residual add are not counted.)
q, k and v come from one 1x1 conv with the three weights stacked: the same
function and MACs, but x is read once and its gradient comes from one product.

Deviations from the official code (github.com/speedinghzl/CCNet):
- Pure PyTorch (batched matrix products over rows and columns), no custom
  CUDA kernel; the diagonal of the column energies is masked with -inf
  exactly as in the official pure-PyTorch branch, so the centre appears once
  in the softmax.
- The official RCCAModule wraps the attention in a 3x3 conv + BN before
  (C -> C/4) and after, and a bottleneck conv over concat[input, output].
  Here those convolutions belong to the shared segmentation head, so this
  module is only the recurrent criss-cross attention on C channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrissCrossAttention"]


class CrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention (RCCA) over a (B, C, H, W) feature map."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "criss_cross"  # the query's weights on its cross
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, reduction: int = 8, recurrence: int = 2) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(
                f"reduction must be in [1, channels]; got reduction={reduction}, "
                f"channels={channels}"
            )
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence}")
        self.channels = channels
        self.reduction = reduction
        self.recurrence = recurrence
        inner = channels // reduction
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k (B, C', H, W) and v (B, C, H, W) from one 1x1 conv that reads x once."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        inner = self.query.out_channels
        return F.conv2d(x, weight, bias).split([inner, inner, self.channels], dim=1)

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of every position over its column and its row.

        Returns (column weights (B, H, W, H), row weights (B, H, W, W)); for
        query (h, w) the column part indexes the key row g, the row part the
        key column v. The two parts of one query sum to 1 together.
        """
        height, width = q.shape[2], q.shape[3]
        energy_col = torch.einsum("bchw,bcgw->bhwg", q, k)  # (B, H, W, H)
        energy_row = torch.einsum("bchw,bchv->bhwv", q, k)  # (B, H, W, W)
        # The centre already sits in its row; masking it in the column keeps it counted once.
        # The row always keeps the centre, so a 1-long column (H == 1) cannot give NaN.
        diagonal = torch.eye(height, dtype=torch.bool, device=q.device).view(height, 1, height)
        energy_col = energy_col.masked_fill(diagonal, float("-inf"))
        weights = torch.softmax(torch.cat([energy_col, energy_row], dim=-1), dim=-1)
        # split, not two slices: its backward concatenates the two gradients, where each
        # slice's backward would write its gradient into a fresh zero-filled tensor.
        col, row = weights.split([height, width], dim=-1)
        return col, row

    def _step(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._project(x)
        att_col, att_row = self._weights(q, k)  # (B, H, W, H), (B, H, W, W)
        # Batched products over rows (b, h) and columns (b, w); summing the two permuted
        # results writes the context straight into x's (B, C, H, W) layout.
        row = v.permute(0, 2, 1, 3) @ att_row.transpose(-2, -1)  # (B, H, C, W)
        col = v.permute(0, 3, 1, 2) @ att_col.permute(0, 2, 3, 1)  # (B, W, C, H)
        context = row.permute(0, 2, 1, 3) + col.permute(0, 2, 3, 1)  # (B, C, H, W)
        return torch.addcmul(x, self.gamma, context)  # x + gamma * context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self._step(x)  # shared weights on every pass
        return x

    def open_gate(self) -> None:
        """Start gamma at 1 instead of the paper's 0 (the fairness ablation)."""
        with torch.no_grad():
            self.gamma.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """gamma: the paper starts it at 0."""
        return (self.gamma,)

    def macs(self, height: int, width: int) -> int:
        n, c, inner = height * width, self.channels, self.channels // self.reduction
        per_pass = n * c * (2 * inner + c) + n * (height + width) * (inner + c)
        return self.recurrence * per_pass

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"criss_cross": (B, 1, H, W)}: the query's weights in the first pass, 0 off its cross."""
        batch, _, height, width = x.shape
        row, col = query if query is not None else (height // 2, width // 2)
        q, k, _ = self._project(x)
        att_col, att_row = self._weights(q, k)  # (B, H, W, H), (B, H, W, W)
        out = x.new_zeros(batch, 1, height, width)
        out[:, 0, :, col] = att_col[:, row, col, :]
        # The centre's weight comes from the row part only (its column entry is 0).
        out[:, 0, row, :] += att_row[:, row, col, :]
        return {"criss_cross": out}
