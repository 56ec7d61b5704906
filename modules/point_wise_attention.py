"""Point-wise spatial attention (PSA), bi-directional, with PSAMask in plain PyTorch.

Paper: "PSANet: Point-wise Spatial Attention Network for Scene Parsing", Zhao, Zhang,
Liu, Shi, Loy, Lin, Jia (ECCV 2018; no arXiv id, hszhao.github.io/papers/eccv18_psanet.pdf).

Two branches, collect and distribute, each on its own features:
    x_b  = ReLU(BN(1x1 C -> Ci))(x), shrunk by bilinear resizing to (h, w)   (B, Ci, n), n = h*w
    M_b  = 1x1 Ci -> mh*mw (no bias) of ReLU(BN(1x1 Ci -> Ci))(x_b)          (B, mh*mw, n)
M_b[:, o, p] is the weight that position p predicts for the relative offset o inside an
mh x mw window centred on p (the "over-completed" map). PSAMask turns it into an n x n map:
    collect     Y[q, p] = M_col[off(q - p), p], softmax over q:   z_col(p) = sum_q x_col(q) Y[q, p]
    distribute  Y[p, q] = M_dis[off(q - p), p], softmax over p:   z_dis(q) = sum_p x_dis(p) Y[p, q]
A pair (p, q) whose offset falls outside the window keeps logit 0 (mmcv's PSAMask leaves
those entries zero before the softmax): it is not excluded.
    z    = ReLU(BN(1x1 2Ci -> C))([z_col, z_dis]), resized back to (H, W) bilinearly
    out  = ReLU(BN(1x1 2C -> C))([x, z])

Defaults: reduction=1 (Ci = C), mask_size=(97, 97) (mmseg's configs), shrink_factor=2,
normalization_factor=1.0 (z is divided by it), psa_softmax=True.

Shrinking follows mmseg: when both H and W are odd, (h, w) = ((H-1)//s + 1, (W-1)//s + 1)
with align_corners=True, else (H//s, W//s) with align_corners=False (a side that would
shrink to 0 keeps length 1); the final resize uses the same align_corners.

Only the offsets some pair (p, q) can have, |dh| <= h-1 and |dw| <= w-1 inside the window,
are computed: the rows of the last 1x1 conv for the other offsets are never read (mmseg
computes all mh*mw channels and drops them in PSAMask). The result is the same function.
PSAMask is a gather with a cached (n, n) index per size (no compiled op).

MACs for one sample, N = H*W, n = h*w, R = (number of used offsets)
= min(2h-1, window rows) * min(2w-1, window columns):
    2*N*C*Ci (the two input convs) + 2*n*Ci*Ci + 2*n*Ci*R (the two mask heads)
    + 2*n*n*Ci (the two aggregations) + n*2Ci*C (projection) + N*2C*C (fuse)
Resizing, softmax, BN and ReLU are lower order and not counted.

Deviations from mmseg's PSAHead (the reference implementation; the authors' code is
Caffe/PyTorch with the same compiled PSAMask):
- the module maps C -> C: mmseg's reduce convs read the 2048-channel backbone feature and
  its bottleneck is a 3x3 conv of [backbone feature, z] to the head's channels; here the
  inputs are the head's C channels and the fuse is a 1x1 conv (the shared head's 3x3
  project conv follows the module).
- mmseg's projection is a 1x1 conv with padding=1, which puts a ring of ReLU(BN bias)
  around the shrunk map before resizing it back; here it has no padding.
- PSANet has no zero-initialised gate: open_gate is a no-op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def shrunk_size(height: int, width: int, factor: int) -> tuple[int, int, bool]:
    """(h, w, align_corners) of mmseg's PSA shrinking."""
    if factor == 1:
        return height, width, False
    if height % factor and width % factor:
        return (height - 1) // factor + 1, (width - 1) // factor + 1, True
    return max(height // factor, 1), max(width // factor, 1), False


class PointwiseSpatialAttention(nn.Module):
    """PSA, collect and distribute branches: (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "collect"  # the query pixel's collect weights
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 1,
        mask_size: tuple[int, int] = (97, 97),
        shrink_factor: int = 2,
        normalization_factor: float = 1.0,
        psa_softmax: bool = True,
    ) -> None:
        super().__init__()
        mask_h, mask_w = (int(v) for v in mask_size)
        if reduction < 1 or shrink_factor < 1 or min(mask_h, mask_w) < 1:
            raise ValueError(
                f"PSA needs reduction, shrink_factor and mask_size >= 1, got {reduction}, "
                f"{shrink_factor}, {mask_size}"
            )
        self.channels = channels
        self.inter_channels = ci = max(channels // reduction, 1)
        self.mask_size = (mask_h, mask_w)
        self.shrink_factor = shrink_factor
        self.normalization_factor = normalization_factor
        self.psa_softmax = psa_softmax
        self.reduce_collect = _conv_bn_relu(channels, ci)
        self.reduce_distribute = _conv_bn_relu(channels, ci)
        self.attention_collect = nn.Sequential(
            _conv_bn_relu(ci, ci), nn.Conv2d(ci, mask_h * mask_w, 1, bias=False)
        )
        self.attention_distribute = nn.Sequential(
            _conv_bn_relu(ci, ci), nn.Conv2d(ci, mask_h * mask_w, 1, bias=False)
        )
        self.proj = _conv_bn_relu(2 * ci, channels)
        self.fuse = _conv_bn_relu(2 * channels, channels)
        self._index_cache: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor, bool]] = {}

    def _offsets(self, h: int, w: int) -> tuple[range, range]:
        """The window offsets (rows, columns) that some pair of an h x w map can have."""
        (mh, mw), (hh, hw) = self.mask_size, ((m - 1) // 2 for m in self.mask_size)
        return (
            range(max(-hh, 1 - h), min(mh - 1 - hh, h - 1) + 1),
            range(max(-hw, 1 - w), min(mw - 1 - hw, w - 1) + 1),
        )

    def _index(
        self, h: int, w: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(rows of the mask conv to compute (R,), gather index (n_q, n_p) into them, whether
        some pair falls outside the window). Such a pair's index is R: a zero row."""
        key = (h, w, str(device))
        if key not in self._index_cache:
            rows, cols = self._offsets(h, w)
            mw, (hh, hw) = self.mask_size[1], ((m - 1) // 2 for m in self.mask_size)
            dh = torch.tensor(list(rows), device=device)
            dw = torch.tensor(list(cols), device=device)
            used = ((dh[:, None] + hh) * mw + dw[None, :] + hw).flatten()  # (R,)
            ph, pw = torch.meshgrid(
                torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
            )
            ph, pw = ph.flatten(), pw.flatten()  # (n,)
            oh = ph[:, None] - ph[None, :] - rows.start  # (n_q, n_p), offset row index
            ow = pw[:, None] - pw[None, :] - cols.start
            inside = (oh >= 0) & (oh < len(rows)) & (ow >= 0) & (ow < len(cols))
            index = torch.where(inside, oh * len(cols) + ow, used.numel())
            self._index_cache[key] = (used, index, not bool(inside.all()))
        return self._index_cache[key]

    def _logits(self, head: nn.Sequential, feat: torch.Tensor) -> torch.Tensor:
        """G[q, p] = M[off(q - p), p] (B, n, n), 0 outside the window."""
        b, _, h, w = feat.shape
        used, index, partial = self._index(h, w, feat.device)
        hidden = head[0](feat)
        weight = head[1].weight[used]  # (R, Ci, 1, 1): only the offsets that occur
        mask = F.conv2d(hidden, weight).flatten(2)  # (B, R, n)
        if partial:
            mask = torch.cat([mask, mask.new_zeros(b, 1, h * w)], dim=1)
        return mask.gather(1, index.expand(b, -1, -1))  # (B, n_q, n_p)

    def _branches(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Shrunk x_col, x_dis (B, Ci, h, w), collect weights over q, distribute over p."""
        h, w, align = shrunk_size(x.shape[2], x.shape[3], self.shrink_factor)
        feats = []
        for reduce in (self.reduce_collect, self.reduce_distribute):
            f = reduce(x)
            if (h, w) != tuple(f.shape[2:]):
                f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=align)
            feats.append(f)
        g_col = self._logits(self.attention_collect, feats[0])  # (B, n_q, n_p)
        g_dis = self._logits(self.attention_distribute, feats[1])  # (B, n_q, n_p)
        if self.psa_softmax:
            g_col, g_dis = g_col.softmax(dim=1), g_dis.softmax(dim=2)
        return feats[0], feats[1], g_col, g_dis, align

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_col, x_dis, y_col, y_dis, align = self._branches(x)
        b, ci, h, w = x_col.shape
        scale = 1.0 / self.normalization_factor
        z_col = torch.bmm(x_col.flatten(2), y_col)  # (B, Ci, n): sum_q x(q) Y[q, p]
        z_dis = torch.bmm(x_dis.flatten(2), y_dis.transpose(1, 2))  # sum_p x(p) Y[p, q]
        z = torch.cat([z_col, z_dis], dim=1).view(b, 2 * ci, h, w) * scale
        z = self.proj(z)  # (B, C, h, w)
        if (h, w) != tuple(x.shape[2:]):
            z = F.interpolate(z, size=x.shape[2:], mode="bilinear", align_corners=align)
        return self.fuse(torch.cat([x, z], dim=1))

    def open_gate(self) -> None:
        """No zero-initialised gate: nothing to open."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()

    def macs(self, height: int, width: int) -> int:
        h, w, _ = shrunk_size(height, width, self.shrink_factor)
        rows, cols = self._offsets(h, w)
        big, n, r = height * width, h * w, len(rows) * len(cols)
        c, ci = self.channels, self.inter_channels
        heads = 2 * n * ci * ci + 2 * n * ci * r
        return 2 * big * c * ci + heads + 2 * n * n * ci + n * 2 * ci * c + big * 2 * c * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"collect", "distribute"}: (B, 1, H, W) each, the query pixel's weights.

        collect: the weights with which the query's shrunk position gathers from every
        position; distribute: the weights with which every position sends to the query.
        Shown at the input size (nearest), so a map sums to about the shrink area."""
        b, _, height, width = x.shape
        row, col = query if query is not None else (height // 2, width // 2)
        saved = [b.clone() for b in self.buffers()]  # BN statistics move in train mode
        _, _, y_col, y_dis, _ = self._branches(x)
        for buffer, value in zip(self.buffers(), saved, strict=True):
            buffer.copy_(value)
        h, w, _ = shrunk_size(height, width, self.shrink_factor)
        p = min(row * h // height, h - 1) * w + min(col * w // width, w - 1)
        maps = {"collect": y_col[:, :, p], "distribute": y_dis[:, p, :]}
        return {
            k: F.interpolate(v.reshape(b, 1, h, w), size=(height, width), mode="nearest")
            for k, v in maps.items()
        }
