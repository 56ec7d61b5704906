"""Peer formulations of PSA and Hamburger: mmseg 1.x PSAHead and LightHamHead's
Hamburger, as plain functions on the module's own weights (see peers.py).

- psa: mmseg `PSAHead` (bi-direction, compact=False) between its reduce convs and its
  bottleneck: the mask heads produce every one of the mh*mw window channels, mmcv's
  compiled PSAMask scatters them into a zero (B, n, n) map (written here as one
  vectorised scatter with a per-size index, the loop of its CPU kernel), softmax over
  dim 1, batched products, projection, resize, fuse.
- ham: mmseg `Hamburger` with `NMF2D`: ham_in, ReLU, the multiplicative updates from
  uniform random bases, the last coefficient update, the reconstruction, ham_out, the
  residual ReLU. mmseg runs every step with autograd on (back-propagation through all
  steps); the module (like the authors' original code) runs them under no_grad and keeps the
  gradient of the last coefficient update only. The forward values are the same
  function, compared with the bases drawn from the same seed.

Written from what the libraries compute (read, not copied); neither is a dependency.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SCATTER: dict[tuple[int, int, int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _psamask_index(h: int, w: int, mask: tuple[int, int], mode: str):
    """(source index into (mh*mw, n), target index into (n, n)) of mmcv's PSAMask."""
    key = (h, w, *mask, mode)
    if key not in _SCATTER:
        mh, mw = mask
        hh, hw = (mh - 1) // 2, (mw - 1) // 2
        src, dst = [], []
        for ph in range(h):
            for pw in range(w):
                for i in range(max(0, hh - ph), min(mh, h + hh - ph)):
                    for j in range(max(0, hw - pw), min(mw, w + hw - pw)):
                        p, q = ph * w + pw, (i + ph - hh) * w + (j + pw - hw)
                        src.append((i * mw + j) * h * w + p)
                        dst.append(q * h * w + p if mode == "collect" else p * h * w + q)
        _SCATTER[key] = (torch.tensor(src), torch.tensor(dst))
    return _SCATTER[key]


def _psamask(m: torch.Tensor, mask: tuple[int, int], mode: str) -> torch.Tensor:
    b, _, h, w = m.shape
    src, dst = _psamask_index(h, w, mask, mode)
    out = m.new_zeros(b, (h * w) ** 2)
    out[:, dst] = m.flatten(1)[:, src]
    return out.view(b, h * w, h, w)


def _mmseg_shrink(h: int, w: int, s: int) -> tuple[int, int, bool]:
    if h % s and w % s:
        return (h - 1) // s + 1, (w - 1) // s + 1, True
    return max(h // s, 1), max(w // s, 1), False


def psa_peer(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg PSAHead (bi-direction) between its reduce convs and bottleneck."""
    identity = x
    x_col, x_dis = mod.reduce_collect(x), mod.reduce_distribute(x)
    n, c, h, w = x_col.size()
    align_corners = False
    if mod.shrink_factor != 1:
        h, w, align_corners = _mmseg_shrink(h, w, mod.shrink_factor)
        x_col = F.interpolate(x_col, size=(h, w), mode="bilinear", align_corners=align_corners)
        x_dis = F.interpolate(x_dis, size=(h, w), mode="bilinear", align_corners=align_corners)
    y_col = _psamask(mod.attention_collect(x_col), mod.mask_size, "collect")
    y_dis = _psamask(mod.attention_distribute(x_dis), mod.mask_size, "distribute")
    if mod.psa_softmax:
        y_col, y_dis = F.softmax(y_col, dim=1), F.softmax(y_dis, dim=1)
    scale = 1.0 / mod.normalization_factor
    x_col = torch.bmm(x_col.view(n, c, h * w), y_col.view(n, h * w, h * w)).view(n, c, h, w)
    x_dis = torch.bmm(x_dis.view(n, c, h * w), y_dis.view(n, h * w, h * w)).view(n, c, h, w)
    # mmseg's proj conv pads by 1 (a ring of ReLU(BN bias) before the resize); the module's
    # has no padding, and neither has this peer, so the two compute the same function.
    out = mod.proj(torch.cat([x_col * scale, x_dis * scale], 1))
    out = F.interpolate(out, size=identity.shape[2:], mode="bilinear", align_corners=align_corners)
    return mod.fuse(torch.cat((identity, out), dim=1))


def _nmf_step(x, bases, coef):
    numerator = torch.bmm(x.transpose(1, 2), bases)
    denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
    coef = coef * numerator / (denominator + 1e-6)
    numerator = torch.bmm(x, coef)
    denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))
    bases = bases * numerator / (denominator + 1e-6)
    return bases, coef


def ham_peer(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg Hamburger(NMF2D), every step with autograd on. Training: fresh bases
    (torch.rand, L2 over D) as mmseg's rand_init; evaluation: the module's fixed bases,
    as mmseg's rand_init=False path (the module's evaluation uses those)."""
    enjoy = F.relu(mod.ham_in(x), inplace=True)
    b, c, h, w = enjoy.shape
    s = mod.groups
    d, r = c // s, mod.rank
    flat = enjoy.view(b * s, d, h * w)
    if mod.training and mod.rand_init:
        bases = F.normalize(torch.rand((b * s, d, r)).to(flat), dim=1)
    else:
        bases = mod.bases.repeat(b, 1, 1)
    coef = F.softmax(torch.bmm(flat.transpose(1, 2), bases), dim=-1)  # inv_t = 1 for NMF
    for _ in range(mod.train_steps if mod.training else mod.eval_steps):
        bases, coef = _nmf_step(flat, bases, coef)
    numerator = torch.bmm(flat.transpose(1, 2), bases)
    denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
    coef = coef * numerator / (denominator + 1e-6)
    enjoy = torch.bmm(bases, coef.transpose(1, 2)).view(b, c, h, w)
    return F.relu(x + mod.norm(mod.ham_out(enjoy)), inplace=True)
