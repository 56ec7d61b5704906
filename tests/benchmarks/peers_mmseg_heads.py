"""Peer formulations of the newer zoo modules: mmseg's heads in their order of operations.

Each `<name>_peer(module, x)` computes what the module computes, with the module's own
layers, in the operation order of the public pure-PyTorch version a user would lift:

- gc:  mmcv 2.x `ContextBlock` (attention pooling, channel add), as mmseg's GCHead uses;
- dnl: mmseg 1.x `DisentangledNonLocal2d` (DNLHead's block): explicit N x N weights,
       in-place whitening and scaling, the output conv and BN run on each term;
- ann: mmseg 1.x `APNB` (ANNHead's context block): mmseg's SelfAttentionBlock with the
       shared key/query conv applied twice (as query and as key), `PPMConcat` pools;
- ocr: mmseg 1.x `SpatialGatherModule` and `ObjectAttentionBlock` on the module's region
       logits (mmseg takes them from the cascade's first head);
- apc: mmseg 1.x `APCHead`'s ACMs (the global information upsampled bilinearly from
       1 x 1) and its 3x3 bottleneck on [x, ACM outputs];
- dm:  mmseg 1.x `DMHead`'s DCMs (the batch folded into the channels of one grouped
       conv) and its 3x3 bottleneck.

Written from what those libraries compute (their semantics, read, not copied); neither
library is a dependency.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gc_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmcv ContextBlock: a (B, 1, C, N) x (B, 1, N, 1) product pools, then the bottleneck."""
    b, c, h, w = x.shape
    features = x.view(b, c, h * w).unsqueeze(1)  # (B, 1, C, N)
    mask = F.softmax(m.mask(x).view(b, 1, h * w), dim=2).unsqueeze(-1)  # (B, 1, N, 1)
    context = torch.matmul(features, mask).view(b, c, 1, 1)
    term = m.out_conv(F.relu(m.norm(m.in_conv(context)), inplace=True))
    return x + term


def dnl_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg DisentangledNonLocal2d, embedded-Gaussian mode."""
    n, ci = x.size(0), m.inter_channels
    g_x = m.g(x).view(n, ci, -1).permute(0, 2, 1)  # (B, N, Ci)
    theta_x = m.theta(x).view(n, ci, -1).permute(0, 2, 1)  # (B, N, Ci)
    phi_x = m.phi(x).view(n, ci, -1)  # (B, Ci, N)
    theta_x -= theta_x.mean(dim=-2, keepdim=True)
    phi_x -= phi_x.mean(dim=-1, keepdim=True)
    pairwise = torch.matmul(theta_x, phi_x)  # (B, N, N)
    if m.use_scale:
        pairwise /= theta_x.shape[-1] ** 0.5
    pairwise /= m.temperature
    pairwise = pairwise.softmax(dim=-1)
    y = torch.matmul(pairwise, g_x).permute(0, 2, 1).contiguous().reshape(n, ci, *x.shape[2:])
    unary = m.mask(x).view(n, 1, -1).softmax(dim=-1)  # (B, 1, N)
    unary = torch.matmul(unary, g_x).permute(0, 2, 1).contiguous().reshape(n, ci, 1, 1)
    return x + m.out_bn(m.out_conv(y)) + m.out_bn(m.out_conv(unary))


def _ppm_concat(t: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([nn.AdaptiveAvgPool2d(s)(t).view(*t.shape[:2], -1) for s in scales], dim=2)


def ann_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg APNB with one query scale: attention over the pyramid, then the bottleneck."""
    b = x.size(0)
    query = m.key(x)  # the shared projection, as query
    query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1).contiguous()  # (B, N, Ck)
    key = _ppm_concat(m.key(x), m.pool_scales)  # the same projection again, as key
    value = _ppm_concat(m.value(x), m.pool_scales).permute(0, 2, 1).contiguous()  # (B, S, Ck)
    sim = F.softmax((m.key_channels**-0.5) * torch.matmul(query, key), dim=-1)
    context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
    context = m.out_conv(context.reshape(b, -1, *x.shape[2:]))
    context = torch.stack([context], dim=0).sum(dim=0)  # the sum over query scales
    return m.fuse(torch.cat([context, x], 1))


def ocr_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg OCRHead after its input conv: spatial gather, object attention, bottleneck."""
    probs = m.region_head(x)  # mmseg: the previous head's class logits
    b, k = probs.shape[:2]
    c = x.size(1)
    probs = F.softmax(probs.view(b, k, -1), dim=2)  # scale 1
    feats = x.view(b, c, -1).permute(0, 2, 1)  # (B, N, C)
    context = torch.matmul(probs, feats).permute(0, 2, 1).contiguous().unsqueeze(3)  # (B,C,K,1)
    query = m.query(x)
    query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1).contiguous()  # (B, N, Co)
    key = m.key(context)
    key = key.reshape(*key.shape[:2], -1)  # (B, Co, K)
    value = m.value(context)
    value = value.reshape(*value.shape[:2], -1).permute(0, 2, 1).contiguous()  # (B, K, Co)
    sim = F.softmax((m.key_channels**-0.5) * torch.matmul(query, key), dim=-1)
    out = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
    out = m.out(out.reshape(b, -1, *x.shape[2:]))
    return m.fuse(torch.cat([out, x], dim=1))


def _acm_peer(acm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    s = acm.scale
    pooled_x = F.adaptive_avg_pool2d(x, s)
    x = acm.reduce(x)
    pooled = acm.pooled(pooled_x)
    b = x.size(0)
    pooled = pooled.view(b, pooled.size(1), -1).permute(0, 2, 1).contiguous()  # (B, S, Ci)
    glob = acm.global_info(F.adaptive_avg_pool2d(x, 1))
    glob = F.interpolate(glob, size=x.shape[2:], mode="bilinear", align_corners=False)
    affinity = acm.affinity(x + glob).permute(0, 2, 3, 1).reshape(b, -1, s * s)
    z = torch.matmul(torch.sigmoid(affinity), pooled).permute(0, 2, 1).contiguous()
    z = acm.residual(z.view(b, -1, x.size(2), x.size(3)))
    z = F.relu(z + x)
    return z if acm.fusion is None else acm.fusion(z)


def apc_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg APCHead without its classifier: ACMs, concatenation, 3x3 bottleneck."""
    return m.bottleneck(torch.cat([x] + [_acm_peer(acm, x) for acm in m.branches], dim=1))


def _dcm_peer(dcm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One DCM: filters from the pooled input, the batch folded into one grouped conv."""
    k = dcm.size
    filters = dcm.generate(F.adaptive_avg_pool2d(x, k))  # (B, Ci, k, k)
    reduced = dcm.reduce(x)
    b, c, h, w = reduced.shape
    low, high = k // 2, (k - 1) // 2  # an even k: one more row/column at the top/left
    folded = F.pad(reduced.view(1, b * c, h, w), (low, high, low, high))
    out = F.conv2d(folded, filters.view(b * c, 1, k, k), groups=b * c).view(b, c, h, w)
    out = F.relu(dcm.norm(out))
    return out if dcm.fusion is None else dcm.fusion(out)


def dm_peer(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg DMHead without its classifier: DCMs, concatenation, 3x3 bottleneck."""
    return m.bottleneck(torch.cat([x] + [_dcm_peer(dcm, x) for dcm in m.branches], dim=1))


MMSEG_HEAD_PEERS = {
    "ann": ann_peer,
    "apc": apc_peer,
    "dm": dm_peer,
    "dnl": dnl_peer,
    "gc": gc_peer,
    "ocr": ocr_peer,
}
