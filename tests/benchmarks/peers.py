"""Peer formulations: what a user would otherwise copy, as plain functions.

Each `<name>_peer(module, x)` computes the same function as `modules.build(name, ...)`
with that module's own weights (so the outputs can be compared), but in the operation
order of the public pure-PyTorch version most people lift:

- nonlocal: mmcv 2.x `NonLocal2d` (embedded Gaussian, BN after the output conv);
- ccnet:    mmcv 2.x `CrissCrossAttention`, applied `recurrence` times as mmseg's CCHead;
- danet:    mmseg 1.x `DAHead`'s PAM and CAM, then the two branch conv-BN-ReLUs, summed;
- isa:      mmseg 1.x `ISAHead` between its input conv and classifier;
- ema:      mmseg 1.x `EMAHead`'s mid conv, `EMAModule` and out conv with the residual;
- psa, ham:  mmseg 1.x `PSAHead` and `LightHamHead`'s Hamburger (peers_psa_ham.py);
- a2:       no mmcv/mmseg version exists; the paper's equations in their order, in the
            fastest form found for that order (see a2_peer).

They were written from the papers and from what those libraries compute (their
semantics, read, not copied). The layers the two sides share (convolutions, BN, ReLU)
are the module's own; only the attention arithmetic is re-implemented. The two small
differences from the libraries that do not change the cost are noted where they occur.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from peers_mmseg_heads import MMSEG_HEAD_PEERS
from peers_psa_ham import ham_peer, psa_peer
from torch import nn


def nonlocal_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmcv NonLocal2d order: g, theta, phi; in-place scale of the N x N product."""
    b, _, h, w = x.shape
    ci = m.inter_channels
    g = m.g(x).view(b, ci, -1).permute(0, 2, 1)  # (B, N, Ci)
    theta = m.theta(x).view(b, ci, -1).permute(0, 2, 1)  # (B, N, Ci)
    phi = m.phi(x).view(b, ci, -1)  # (B, Ci, N)
    weight = torch.matmul(theta, phi)  # (B, N, N)
    if m.use_scale:
        weight /= ci**0.5
    weight = weight.softmax(dim=-1)
    y = torch.matmul(weight, g).permute(0, 2, 1).contiguous().reshape(b, ci, h, w)
    return x + m.out_bn(m.out_conv(y))


def _neg_inf_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return torch.diag(torch.full((n,), float("-inf"), device=device))


def ccnet_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmcv CrissCrossAttention, `recurrence` passes with shared weights."""
    height = x.shape[2]
    for _ in range(m.recurrence):
        q, k, v = m.query(x), m.key(x), m.value(x)
        energy_h = torch.einsum("bchw,bciw->bwhi", q, k) + _neg_inf_diagonal(height, x.device)
        energy_h = energy_h.transpose(1, 2)  # (B, H, W, H)
        energy_w = torch.einsum("bchw,bchj->bhwj", q, k)  # (B, H, W, W)
        attn = F.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)
        out = torch.einsum("bciw,bhwi->bchw", v, attn[..., :height])
        out += torch.einsum("bchj,bhwj->bchw", v, attn[..., height:])
        x = (m.gamma * out + x).contiguous()
    return x


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None):
    """mmseg SelfAttentionBlock order: q (M, C', n), k (M, C', n), v (M, C, n) -> (M, C, n)."""
    query = q.permute(0, 2, 1).contiguous()  # (M, n, C')
    value = v.permute(0, 2, 1).contiguous()  # (M, n, C)
    sim = torch.matmul(query, k)  # (M, n, n)
    if scale is not None:
        sim = scale * sim
    sim = F.softmax(sim, dim=-1)
    return torch.matmul(sim, value).permute(0, 2, 1).contiguous()  # (M, C, n)


def danet_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg DAHead: PAM (no scale), CAM, each through its conv-BN-ReLU, summed."""
    b, c, h, w = x.shape
    q, k, v = m.query(x).flatten(2), m.key(x).flatten(2), m.value(x).flatten(2)
    pam = m.gamma_position * _attend(q, k, v, None).reshape(b, c, h, w) + x
    flat = x.view(b, c, -1)  # (B, C, N)
    energy = torch.bmm(flat, flat.permute(0, 2, 1))  # (B, C, C)
    energy = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
    cam = torch.bmm(F.softmax(energy, dim=-1), flat).view(b, c, h, w)
    cam = m.gamma_channel * cam + x
    return m.position_conv(pam) + m.channel_conv(cam)


def _isa_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # mmseg's value conv has a bias; the module's has none (a value bias is removed by the
    # output BN). One bias add over (M, C, n) is left out here: a cost well under 1 %.
    m, c, h, w = x.shape
    q, k, v = block.query(x).flatten(2), block.key(x).flatten(2), block.value(x).flatten(2)
    context = _attend(q, k, v, block.key_channels**-0.5).reshape(m, c, h, w)
    return block.out(context)


def isa_peer(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg ISAHead between its input conv and classifier: pad, long range, short range."""
    n, c, h, w = x.shape
    loc_h, loc_w = mod.down_factor
    glb_h, glb_w = math.ceil(h / loc_h), math.ceil(w / loc_w)
    pad_h, pad_w = glb_h * loc_h - h, glb_w * loc_w - w
    feats = x
    if pad_h > 0 or pad_w > 0:
        feats = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    feats = feats.view(n, c, glb_h, loc_h, glb_w, loc_w).permute(0, 3, 5, 1, 2, 4)
    feats = _isa_block(mod.long_range, feats.reshape(-1, c, glb_h, glb_w))
    feats = feats.view(n, loc_h, loc_w, c, glb_h, glb_w).permute(0, 4, 5, 3, 1, 2)
    feats = _isa_block(mod.short_range, feats.reshape(-1, c, loc_h, loc_w))
    feats = feats.view(n, glb_h, glb_w, c, loc_h, loc_w).permute(0, 3, 1, 4, 2, 5)
    feats = feats.reshape(n, c, glb_h * loc_h, glb_w * loc_w)
    if pad_h > 0 or pad_w > 0:
        feats = feats[:, :, pad_h // 2 : pad_h // 2 + h, pad_w // 2 : pad_w // 2 + w]
    # mmseg concatenates [context, input]; the module's fuse conv expects [input, context].
    # The order of the channels does not change the cost.
    return mod.fuse(torch.cat([x, feats], dim=1))


def ema_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg EMAHead around EMAModule; the moving average is computed and dropped."""
    b, c, h, w = x.shape
    feats = m.conv1(x).view(b, c, h * w)  # frozen conv, outside no_grad as in mmseg
    bases = m.mu.repeat(b, 1, 1)  # (B, C, K)
    with torch.no_grad():
        for _ in range(m.active_stages()):
            attention = F.softmax(torch.einsum("bcn,bck->bnk", feats, bases), dim=2)
            normed = F.normalize(attention, dim=1, p=1)
            bases = F.normalize(torch.einsum("bcn,bnk->bck", feats, normed), dim=1, p=2)
    recon = torch.einsum("bck,bnk->bcn", bases, attention).view(b, c, h, w)
    if m.training:
        mean = F.normalize(bases.mean(dim=0, keepdim=True), dim=1, p=2)
        _ = (1 - m.momentum) * m.mu + m.momentum * mean
    recon = F.relu(recon, inplace=True)
    return F.relu(x + m.bn(m.conv2(recon)), inplace=True)


def a2_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A^2 block in the paper's order: project, gather, distribute, then W and the residual.

    The fastest form of that order measured on CPU, float32: the three 1x1 projections
    as one batched product (faster than one fused conv2d, which takes the slow_conv2d
    path, and much faster than a broadcasting matmul), the output projection as a
    batched product that adds the residual. The module differs only in the order of
    W and the distribution (see modules/double_attention.py).
    """
    b, c, h, w = x.shape
    weight = torch.cat([m.phi.weight, m.theta.weight, m.rho.weight]).flatten(1)  # (3c, C)
    bias = torch.cat([m.phi.bias, m.theta.bias, m.rho.bias])
    flat = x.flatten(2)  # (B, C, N)
    proj = torch.baddbmm(bias[:, None], weight.expand(b, -1, -1), flat)
    a, gate, dist = proj.split([m.c_m, m.c_n, m.c_n], dim=1)
    descriptors = torch.bmm(a, gate.softmax(dim=2).transpose(1, 2))  # (B, c_m, c_n)
    z = torch.bmm(descriptors, dist.softmax(dim=1))  # (B, c_m, N)
    w_out = m.out_conv.weight.flatten(1).expand(b, -1, -1)  # (B, C, c_m)
    return torch.baddbmm(flat + m.out_conv.bias[:, None], w_out, z).view(b, c, h, w)


def a2_conv_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A^2 in the paper's order with the 1x1 maps as conv2d (one fused for A, B and V):
    the form a2_peer was measured against (a2_forms.py)."""
    b, _, h, w = x.shape
    weight = torch.cat([m.phi.weight, m.theta.weight, m.rho.weight])
    bias = torch.cat([m.phi.bias, m.theta.bias, m.rho.bias])
    a, gate, dist = F.conv2d(x, weight, bias).flatten(2).split([m.c_m, m.c_n, m.c_n], dim=1)
    descriptors = torch.bmm(a, gate.softmax(dim=2).transpose(1, 2))  # (B, c_m, c_n)
    z = torch.bmm(descriptors, dist.softmax(dim=1)).view(b, m.c_m, h, w)  # (B, c_m, N)
    return x + m.out_conv(z)


PEERS = {
    "nonlocal": nonlocal_peer,
    "a2": a2_peer,
    "ccnet": ccnet_peer,
    "isa": isa_peer,
    "danet": danet_peer,
    "ema": ema_peer,
    **MMSEG_HEAD_PEERS,  # the newer modules' peers (peers_mmseg_heads.py)
    "ham": ham_peer,
    "psa": psa_peer,
}
