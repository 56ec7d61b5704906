"""Interlaced sparse self-attention (ISA): long-range then short-range attention.

Paper: "Interlaced Sparse Self-Attention for Semantic Segmentation", Huang et al.,
arXiv 1907.12273.

The map is padded with zeros to Hp x Wp, multiples of the block size
(Ph, Pw) = down_factor, the padding split between both sides (the odd pixel
after). With gh = Hp / Ph and gw = Wp / Pw:
- long range: the Ph * Pw positions sharing an offset inside their block form a
  group of G = gh * gw positions spaced (Ph, Pw) apart; self-attention inside
  every group;
- short range: self-attention inside every Ph x Pw block, on the long-range
  output.
Each self-attention: query and key are two (1x1 conv, BN, ReLU) layers to Ck,
value is a 1x1 conv C -> C, a = softmax(q . k * Ck^-0.5), output
(1x1 conv, BN, ReLU) of the weighted sum. The context is cropped back to H x W
and out = (1x1 conv, BN, ReLU)(concat[x, context]), 2C -> C.

Defaults: down_factor=(8, 8) (an int means a square block), key_channels=C // 2.
The block has no zero-initialised scale and cannot start as the identity: its
output is always the fuse conv-BN-ReLU of the concatenation (as in the paper).

Multiply-accumulates for one sample, N = H * W, Np = Hp * Wp, G = gh * gw:

    MACs = 2 * (2 * Np * Ck * (C + Ck) + 2 * Np * C^2)   q, k (two convs each), v, out; 2 blocks
         + Np * (G + Ph * Pw) * (Ck + C)                 energies and weighted sums
         + 2 * N * C^2                                   fuse conv over concat[x, context]

(padded sizes everywhere except the fuse conv; BN, ReLU, softmax not counted.)

Deviations from, and choices shared with, the official code
(github.com/openseg-group/openseg.pytorch, lib/models/modules/isa_block.py):
- Padding zeros take part in attention, as in the official code: padded
  positions are keys in the long-range groups (value 0 but a non-zero key,
  since BN shifts it) and, after the long-range block, carry non-zero
  features into the short-range blocks. BN batch statistics in training
  include them too. So outputs near a padded border depend on the padding.
- All convolutions have no bias, as in the official code. The SPEC's "1x1"
  for the value would carry a bias; here it would be redundant: the
  attention weights sum to 1, so a value bias adds a constant per channel
  that the next BN removes in training.
- The official fuse layer ends with Dropout2d(0.05); the shared head already
  has its own dropout, so it is left out. Only a single down_factor is
  supported (the official code can concatenate several).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InterlacedSparseAttention"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@contextlib.contextmanager
def _keep_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every buffer (BN running statistics) on exit."""
    saved = [b.detach().clone() for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved, strict=True):
                buffer.copy_(value)


class _SelfAttention(nn.Module):
    """Scaled dot-product self-attention over all positions of each (M, C, h, w) map.

    Meant for channels-last maps (memory (M, h, w, C)): the 1x1 convolutions are then
    one matrix product over all M*h*w positions, and q, k, v come out as (M, n, C)
    without a copy. Any layout gives the same result.
    """

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(
            *_conv_bn_relu(channels, key_channels), *_conv_bn_relu(key_channels, key_channels)
        )
        self.key = nn.Sequential(
            *_conv_bn_relu(channels, key_channels), *_conv_bn_relu(key_channels, key_channels)
        )
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.out = nn.Sequential(*_conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, c, h, w = x.shape
        q = _positions_last(self.query(x))  # (M, n, Ck)
        k = _positions_last(self.key(x))  # (M, n, Ck)
        v = _positions_last(self.value(x))  # (M, n, C)
        energy = torch.bmm(q, k.transpose(1, 2)) * self.key_channels**-0.5  # (M, n, n)
        attention = torch.softmax(energy, dim=-1)
        context = torch.bmm(attention, v).view(m, h, w, c)  # (M, h, w, C)
        return self.out(_channels_first(context)), attention


def _positions_last(t: torch.Tensor) -> torch.Tensor:
    """(M, C, h, w) -> (M, h*w, C); a view when t is channels-last."""
    m, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(m, h * w, c)


def _channels_first(t: torch.Tensor) -> torch.Tensor:
    """(M, h, w, C) -> the (M, C, h, w) view of it, channels-last in memory."""
    return t.permute(0, 3, 1, 2)


class InterlacedSparseAttention(nn.Module):
    """Long-range (interlaced groups) then short-range (local blocks) self-attention, fused."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "long_range"  # the query's long-range block weights
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        down_factor: int | Sequence[int] = (8, 8),
        key_channels: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(down_factor, int):
            down_factor = (down_factor, down_factor)
        factors = tuple(down_factor)
        if len(factors) != 2 or not all(isinstance(f, int) and f >= 1 for f in factors):
            raise ValueError(
                f"down_factor must be a positive int or a pair of them, got {down_factor!r}"
            )
        key_channels = channels // 2 if key_channels is None else key_channels
        if key_channels < 1:
            raise ValueError(f"key_channels must be >= 1, got {key_channels}")
        self.channels = channels
        self.down_factor: tuple[int, ...] = factors
        self.key_channels = key_channels
        self.long_range = _SelfAttention(channels, key_channels)
        self.short_range = _SelfAttention(channels, key_channels)
        self.fuse = nn.Sequential(*_conv_bn_relu(2 * channels, channels))

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) zeros that make H, W multiples of the block size."""
        ph, pw = self.down_factor
        pad_h = math.ceil(height / ph) * ph - height
        pad_w = math.ceil(width / pw) * pw - width
        return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2

    def _context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cropped context (B, C, H, W), long-range (B*Ph*Pw, G, G), short-range (B*G, P, P)."""
        batch, channels, height, width = x.shape
        ph, pw = self.down_factor
        top, bottom, left, right = self._padding(height, width)
        # Positions before channels from here on (B, H, W, C): each regrouping below is
        # one copy, and both blocks get channels-last maps (see _SelfAttention).
        feats = x.permute(0, 2, 3, 1)
        if top + bottom + left + right:
            feats = F.pad(feats, (0, 0, left, right, top, bottom))  # (B, Hp, Wp, C)
        gh, gw = feats.shape[1] // ph, feats.shape[2] // pw
        # Same offset (a, b) inside the blocks -> one long-range group.
        feats = feats.reshape(batch, gh, ph, gw, pw, channels).permute(0, 2, 4, 1, 3, 5)
        feats = feats.reshape(batch * ph * pw, gh, gw, channels)
        feats, long_att = self.long_range(_channels_first(feats))  # (B*Ph*Pw, C, gh, gw)
        # Same block (i, j) -> one short-range group.
        feats = feats.permute(0, 2, 3, 1).reshape(batch, ph, pw, gh, gw, channels)
        feats = feats.permute(0, 3, 4, 1, 2, 5).reshape(batch * gh * gw, ph, pw, channels)
        feats, short_att = self.short_range(_channels_first(feats))  # (B*gh*gw, C, Ph, Pw)
        feats = feats.permute(0, 2, 3, 1).reshape(batch, gh, gw, ph, pw, channels)
        feats = feats.permute(0, 1, 3, 2, 4, 5).reshape(batch, gh * ph, gw * pw, channels)
        feats = feats[:, top : top + height, left : left + width]  # (B, H, W, C)
        return _channels_first(feats), long_att, short_att

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context, _, _ = self._context(x)  # (B, C, H, W)
        return self.fuse(torch.cat([x, context], dim=1))

    def open_gate(self) -> None:
        """No zero-initialised gate: the context path is on from the start."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()  # no zero-initialised gate

    def macs(self, height: int, width: int) -> int:
        ph, pw = self.down_factor
        top, bottom, left, right = self._padding(height, width)
        hp, wp = height + top + bottom, width + left + right
        n, n_pad, groups = height * width, hp * wp, (hp // ph) * (wp // pw)
        c, ck = self.channels, self.key_channels
        per_block = 2 * n_pad * ck * (c + ck) + 2 * n_pad * c * c
        attention = n_pad * (groups + ph * pw) * (ck + c)
        return 2 * per_block + attention + 2 * n * c * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"long_range", "short_range"}: (B, 1, H, W) weights of the query pixel in each stage.

        Weights that fall on padded positions are cropped away with the padding,
        so a map may sum to less than 1 near a padded border.
        """
        batch, _, height, width = x.shape
        row, col = query if query is not None else (height // 2, width // 2)
        ph, pw = self.down_factor
        top, bottom, left, right = self._padding(height, width)
        gh, gw = (height + top + bottom) // ph, (width + left + right) // pw
        r, c = row + top, col + left  # the query in padded coordinates
        # BN running statistics would move in train mode; a visualisation must leave no trace.
        with _keep_buffers(self):
            _, long_att, short_att = self._context(x)
        # (B*Ph*Pw, G, G) -> the query's group and row.
        long_att = long_att.view(batch, ph, pw, gh * gw, gh * gw)
        long_w = long_att[:, r % ph, c % pw, (r // ph) * gw + c // pw]  # (B, G)
        long_map = x.new_zeros(batch, gh, ph, gw, pw)
        long_map[:, :, r % ph, :, c % pw] = long_w.view(batch, gh, gw)
        # (B*gh*gw, P, P) -> the query's block and row.
        short_att = short_att.view(batch, gh, gw, ph * pw, ph * pw)
        short_w = short_att[:, r // ph, c // pw, (r % ph) * pw + c % pw]  # (B, Ph*Pw)
        short_map = x.new_zeros(batch, gh, ph, gw, pw)
        short_map[:, r // ph, :, c // pw, :] = short_w.view(batch, ph, pw)
        maps = {}
        for name, padded in (("long_range", long_map), ("short_range", short_map)):
            padded = padded.view(batch, 1, gh * ph, gw * pw)
            maps[name] = padded[:, :, top : top + height, left : left + width]
        return maps
