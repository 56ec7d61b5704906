"""Object-contextual representations (OCR), with its own soft-region head.

Paper: "Object-Contextual Representations for Semantic Segmentation", Yuan, Chen,
Wang (arXiv 1909.11065).

Each pixel attends over K object-region representations instead of over pixels.
With x_i the input at position i, N = H * W, Co = C // reduction:

    l   = W_r x + b_r                               (K, N) soft-region logits, 1x1 C -> K
    f_k = sum_i softmax_i(l_ki) x_i                 (C,)   region representations
    q_i = phi(x_i),  k_k = psi(f_k),  v_k = delta(f_k)
    w_ik = softmax_k(Co^-0.5 q_i . k_k)             (N, K) pixel-region relation
    y_i = rho(sum_k w_ik v_k)                       object context, Co -> C
    out_i = g([y_i; x_i])                            fusion, 2C -> C

phi, psi: two 1x1 conv-BN-ReLU (C -> Co -> Co); delta: one 1x1 conv-BN-ReLU
(C -> Co); rho: 1x1 conv-BN-ReLU (Co -> C); g: 1x1 conv-BN-ReLU (2C -> C); the
convs before a BN have no bias. Defaults: regions K = 21, reduction = 2
(mmseg's OCRNet: 256 OCR channels on a 512-channel head). No zero-initialised
gate: the block is not the identity at initialisation.

Deviation from the paper and from mmseg's OCRHead (the one-input interface): OCR
needs a coarse segmentation to form the soft object regions. In the paper (and in
mmseg's cascade of an FCN head and the OCR head) it is the class prediction of an
auxiliary head on the backbone's stage-3 feature, supervised with the labels
(loss weight 0.4), and K is the number of classes. A context module here receives
one tensor and no labels, so the module owns its region head: the 1x1 conv W_r on
its own input, trained only through the OCR path (no region loss), and K is a
hyper-parameter (`regions`; 21 is VOC's class count). Given the same region logits,
everything after them is mmseg's OCR head without its input 3x3 conv (the shared
head's reduce conv takes that place) and without its classifier.

MACs for one sample, N = H * W, K regions:
    N * C * K                    the region head W_r
    + N * K * C                  the region representations f
    + N * (C * Co + Co * Co)     phi on every pixel
    + K * (2 * C * Co + Co * Co) psi and delta on the K regions
    + 2 * N * K * Co             the relation and its weighted sum
    + N * Co * C + 2 * N * C * C rho and g
The softmaxes, BN and ReLU are lower order and not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ObjectContext"]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ObjectContext(nn.Module):
    """Pixel-to-soft-region attention, the regions from the module's own head: (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "object"  # the query pixel's region weights, spread over the regions
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = "regions"  # the first soft regions, one figure each
    EXTRA_MAP_COUNT: int = 4
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, regions: int = 21, reduction: int = 2) -> None:
        super().__init__()
        if regions < 1:
            raise ValueError(f"regions must be >= 1, got {regions}")
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"reduction must be in [1, channels]; got {reduction}, {channels=}")
        self.channels = channels
        self.regions = regions
        self.key_channels = co = channels // reduction
        self.region_head = nn.Conv2d(channels, regions, 1)
        self.query = nn.Sequential(_conv_bn_relu(channels, co), _conv_bn_relu(co, co))
        self.key = nn.Sequential(_conv_bn_relu(channels, co), _conv_bn_relu(co, co))
        self.value = _conv_bn_relu(channels, co)
        self.out = _conv_bn_relu(co, channels)
        self.fuse = _conv_bn_relu(2 * channels, channels)

    def _regions_and_queries(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft regions (B, K, N) and queries (B, N, Co). The region head and the queries'
        first conv both read x: one 1x1 conv with their weights stacked (the query conv
        has no bias) computes both, so x is read once and its gradient is one product."""
        conv, norm, relu = self.query[0]
        weight = torch.cat([self.region_head.weight, conv.weight])  # (K + Co, C, 1, 1)
        bias = torch.cat(
            [self.region_head.bias, self.region_head.bias.new_zeros(conv.out_channels)]
        )
        logits, first = F.conv2d(x, weight, bias).split([self.regions, conv.out_channels], dim=1)
        regions = torch.softmax(logits.flatten(2), dim=-1)  # (B, K, N)
        queries = self.query[1](relu(norm(first))).flatten(2).transpose(1, 2)  # (B, N, Co)
        return regions, queries

    def _relation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Soft regions (B, K, N), the relation (B, N, K) and the region values (B, K, Co)."""
        b, c = x.shape[:2]
        regions, queries = self._regions_and_queries(x)  # (B, K, N), (B, N, Co)
        # (B, C, K, 1): the K region representations as a K x 1 map for the 1x1 convs.
        features = (x.reshape(b, c, -1) @ regions.transpose(1, 2)).unsqueeze(-1)
        keys = self.key(features).flatten(2)  # (B, Co, K)
        values = self.value(features).flatten(2).transpose(1, 2)  # (B, K, Co)
        relation = torch.softmax((queries @ keys) * self.key_channels**-0.5, dim=-1)  # (B, N, K)
        return regions, relation, values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        _, relation, values = self._relation(x)
        context = (relation @ values).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.fuse(torch.cat([self.out(context), x], dim=1))

    def open_gate(self) -> None:
        """No zero-initialised gate: nothing to open."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()

    def macs(self, height: int, width: int) -> int:
        n, c, co, k = height * width, self.channels, self.key_channels, self.regions
        return (
            2 * n * c * k
            + n * (c * co + co * co)
            + k * (2 * c * co + co * co)
            + 2 * n * k * co
            + n * co * c
            + 2 * n * c * c
        )

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"object": (B, 1, H, W) the query pixel's region weights spread over the soft
        regions, sum_k w_k softmax_i(l_ki) (sums to 1); "regions": (B, K, H, W) each
        region's softmax over positions}. BN in eval form; no state changes."""
        b, _, h, w = x.shape
        row, col = query if query is not None else (h // 2, w // 2)
        training = self.training
        self.eval()  # BN batch statistics would move the running ones
        try:
            regions, relation, _ = self._relation(x)
        finally:
            self.train(training)
        spread = relation[:, row * w + col].unsqueeze(1) @ regions  # (B, 1, N)
        return {"object": spread.view(b, 1, h, w), "regions": regions.view(b, -1, h, w)}
