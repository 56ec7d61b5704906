"""Asymmetric pyramid non-local block (APNB) of ANN.

Paper: "Asymmetric Non-local Neural Networks for Semantic Segmentation", Zhu, Xu,
Bai, Huang, Bai (arXiv 1908.07678).

Keys and values are not every position but a pyramid of pooled cells: adaptive
average pools to s x s for s in pool_scales, S = sum s^2 cells (110 for the
default 1, 3, 6, 8). With Ck = C // reduction:

    q_i = k_i = ReLU(BN(W_k x_i))                  shared 1x1 conv C -> Ck, no bias
    v_i = W_v x_i + b_v                            1x1 conv C -> Ck
    K, V = P k, P v                                (S, Ck): the pyramid pools P (S x N)
    a_is = softmax_s(Ck^-0.5 q_i . K_s)            (N, S)
    c_i  = W_o (sum_s a_is V_s) + b_o              1x1 Ck -> C, weight and bias start at 0
    out_i = ReLU(BN(W_b [c_i; x_i]))               1x1 conv 2C -> C, no bias

Defaults: reduction=2 (mmseg's ANN: 256 key channels on a 512-channel head),
pool_scales=(1, 3, 6, 8), one query scale (no query pooling), as mmseg's ANNHead.
W_o starts at 0 (mmseg's init), so at initialisation c = 0 and out = ReLU(BN(W_b
[0; x])): the block is not the identity (the fusion conv W_b is part of it).

The one-input interface and AFNB: ANN's head has two blocks. AFNB fuses the
backbone's stage-3 feature (keys and values) into the stage-4 feature (queries);
APNB is the self-attention block on the head's reduced feature. A context module
here receives one tensor, the reduced stage-4 feature, so this module is the APNB
alone; the stage-3 fusion is not part of it (the shared head's `fuse` concatenates
the stage-4 feature instead). AFNB fed the same tensor twice would be a second
APNB with separate query and key convs and no final ReLU, so it is not offered.

MACs for one sample, N = H * W:
    2 * N * C * Ck       W_k (queries and keys: computed once) and W_v
    + 2 * N * S * Ck     the products with the pooled keys and values
    + N * Ck * C         W_o
    + 2 * N * C * C      W_b
The pools, softmax, BN and ReLU are lower order and not counted.

Deviation from mmseg's APNB: its self-attention block projects the shared
key/query conv twice on the same input (once as query, once as key); here once.
The function is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AsymmetricNonLocal"]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def pyramid_pool(t: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """(B, c, H, W) -> (B, c, S): the adaptive average pools to s x s, cells concatenated."""
    return torch.cat([F.adaptive_avg_pool2d(t, s).flatten(2) for s in scales], dim=2)


class AsymmetricNonLocal(nn.Module):
    """Non-local attention over pyramid-pooled keys, then a fusion conv: (B, C, H, W) -> same."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "attention"  # the query pixel's weight on every input pixel
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 2,
        pool_scales: tuple[int, ...] = (1, 3, 6, 8),
    ) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"reduction must be in [1, channels]; got {reduction}, {channels=}")
        if not pool_scales or min(pool_scales) < 1:
            raise ValueError(f"pool_scales must be positive sizes; got {pool_scales}")
        self.channels = channels
        self.key_channels = ck = channels // reduction
        self.pool_scales = tuple(pool_scales)
        self.key = _conv_bn_relu(channels, ck)
        self.value = nn.Conv2d(channels, ck, 1)
        self.out_conv = nn.Conv2d(ck, channels, 1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)
        self.fuse = _conv_bn_relu(2 * channels, channels)

    @property
    def cells(self) -> int:
        """S, the pooled keys per image."""
        return sum(s * s for s in self.pool_scales)

    def _weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention (B, N, S) and the pooled values (B, S, Ck)."""
        query = self.key(x)  # (B, Ck, H, W): queries and keys share the projection
        keys = pyramid_pool(query, self.pool_scales)  # (B, Ck, S)
        values = pyramid_pool(self.value(x), self.pool_scales).transpose(1, 2)  # (B, S, Ck)
        energy = query.flatten(2).transpose(1, 2) @ keys  # (B, N, S)
        return torch.softmax(energy * self.key_channels**-0.5, dim=-1), values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        attention, values = self._weights(x)
        context = (attention @ values).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.fuse(torch.cat([self.out_conv(context), x], dim=1))

    def open_gate(self) -> None:
        """Start W_o at nn.Conv2d's default initialisation instead of zero (the fairness
        ablation)."""
        self.out_conv.reset_parameters()

    def gates(self) -> tuple[nn.Parameter, ...]:
        """W_o's weight and bias: mmseg starts them at 0."""
        return (self.out_conv.weight, self.out_conv.bias)

    def macs(self, height: int, width: int) -> int:
        n, c, ck = height * width, self.channels, self.key_channels
        return 2 * n * c * ck + 2 * n * self.cells * ck + n * ck * c + 2 * n * c * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"attention": (B, 1, H, W)}: the weight of each input pixel in the query's
        context, sum_s a_s [pixel in cell s] / |cell s| (the pooled cells' weights spread
        back over the pixels they average; it sums to 1). No state changes."""
        b, _, h, w = x.shape
        row, col = query if query is not None else (h // 2, w // 2)
        training = self.training
        self.eval()  # BN batch statistics would move the running ones
        try:
            attention, _ = self._weights(x)
        finally:
            self.train(training)
        cell_weights = attention[:, row * w + col]  # (B, S)
        with torch.enable_grad():
            probe = torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device, requires_grad=True)
            pooled = pyramid_pool(probe, self.pool_scales)[:, 0]  # (B, S)
            (spread,) = torch.autograd.grad((pooled * cell_weights).sum(), probe)
        return {"attention": spread}
