"""Disentangled non-local block: a whitened pairwise term plus a unary term.

Paper: "Disentangled Non-Local Neural Networks", Yin, Yao, Cao, Li, Zhang, Lin, Hu
(arXiv 2006.06668).

With x_i the input at position i, N = H * W, Ci = C // reduction:

    q_i = W_q x_i,  k_j = W_k x_j,  g_j = W_g x_j + b_g       1x1 convs C -> Ci
    mu_q = mean_i q_i,  mu_k = mean_j k_j                       whitening: the means
    p_ij = softmax_j(s / T * (q_i - mu_q) . (k_j - mu_k))       pairwise, s = Ci^-0.5
    u_j  = softmax_j(w_m . x_j)                                 unary, w_m: 1x1 C -> 1
    y_i  = sum_j p_ij g_j,   z = sum_j u_j g_j
    out_i = x_i + BN(W_z y_i) + BN(W_z z)                        W_z: 1x1 Ci -> C, no bias

Defaults: reduction=2, use_scale=True (s = 1 without), temperature T = 0.05, as
mmseg's DNLHead. The BN's gamma starts at 0, so the block starts as the identity.
The one W_z and BN serve both terms, each normalised on its own (mmseg's order);
z is the same for every position, and its BN runs on z broadcast over H x W: in
training the batch statistics of a broadcast value equal those of the B values
(mean and biased variance), so the output is the same as normalising the B values,
and a batch of one image works (its unary term then normalises to the BN's shift).

Two implementations of the pairwise term, chosen by use_sdpa: True (default) calls
torch's scaled_dot_product_attention on the centred queries and keys with the
scale s / T (O(N) memory on CPU, see non_local.py); False builds the N x N weights,
the form attention_maps uses.

MACs for one sample, N = H * W:
    3 * N * C * Ci         W_q, W_k, W_g as one 1x1 conv
    + 2 * N * N * Ci       the pairwise products
    + N * C + N * Ci       w_m, and the unary weighted sum
    + N * Ci * C + Ci * C  W_z on y and on z
The means, softmaxes and BN are lower order and not counted.

Deviations from mmseg's DisentangledNonLocal2d:
- W_q, W_k and w_m have no bias: the whitening removes a bias of W_q or W_k, and a
  softmax over j is blind to a constant added to every logit, so in mmseg's code
  those three biases get zero gradients; the function is the same.
- In training, mmseg's BN sees the unary term as B values per channel and its
  running variance takes the unbiased factor B / (B - 1); here it sees B * H * W
  copies, so the running variance is updated with B*H*W / (B*H*W - 1). The BN's
  output is the same; batches of one image, which mmseg refuses, work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DisentangledNonLocal"]


class DisentangledNonLocal(nn.Module):
    """Whitened pairwise plus unary non-local block: (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "pairwise"  # the query pixel's whitened pairwise weights
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 2,
        use_scale: bool = True,
        temperature: float = 0.05,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.channels = channels
        self.inter_channels = ci = max(channels // reduction, 1)
        self.use_scale = use_scale
        self.temperature = temperature
        self.use_sdpa = use_sdpa
        self.theta = nn.Conv2d(channels, ci, 1, bias=False)
        self.phi = nn.Conv2d(channels, ci, 1, bias=False)
        self.g = nn.Conv2d(channels, ci, 1)
        self.mask = nn.Conv2d(channels, 1, 1, bias=False)
        self.out_conv = nn.Conv2d(ci, channels, 1, bias=False)
        self.out_bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.out_bn.weight)

    @property
    def scale(self) -> float:
        """The pairwise logits' factor s / T."""
        return (self.inter_channels**-0.5 if self.use_scale else 1.0) / self.temperature

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Centred q, k (B, 1, N, Ci), g (B, 1, N, Ci) and the unary logits (B, N)."""
        ci = self.inter_channels
        weight = torch.cat([self.theta.weight, self.phi.weight, self.g.weight, self.mask.weight])
        # Only g has a bias (see the deviations): zeros for q, k and the unary logit.
        zeros = self.g.bias.new_zeros(2 * ci)
        bias = torch.cat([zeros, self.g.bias, zeros[:1]])
        proj = F.conv2d(x, weight, bias).flatten(2).transpose(1, 2).contiguous()  # (B, N, 3Ci+1)
        q, k, g, logits = proj.split([ci, ci, ci, 1], dim=-1)
        q = (q - q.mean(dim=1, keepdim=True)).unsqueeze(1)  # (B, 1, N, Ci)
        k = (k - k.mean(dim=1, keepdim=True)).unsqueeze(1)
        return q, k, g.contiguous().unsqueeze(1), logits.squeeze(-1)

    def _pairwise(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)  # (B, 1, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, g, logits = self._project(x)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, g, scale=self.scale)  # (B, 1, N, Ci)
        else:
            y = self._pairwise(q, k) @ g  # (B, 1, N, Ci)
        y = y.squeeze(1).transpose(1, 2).reshape(b, self.inter_channels, h, w)
        unary = torch.softmax(logits, dim=-1).unsqueeze(1) @ g.squeeze(1)  # (B, 1, Ci)
        z = self.out_conv(unary.view(b, self.inter_channels, 1, 1))  # (B, C, 1, 1)
        return x + self.out_bn(self.out_conv(y)) + self.out_bn(z.expand(-1, -1, h, w))

    def open_gate(self) -> None:
        """Start the output BN's gamma at 1 instead of the paper's 0 (the fairness ablation)."""
        with torch.no_grad():
            self.out_bn.weight.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """out_bn.weight: mmseg starts it at 0."""
        return (self.out_bn.weight,)

    def macs(self, height: int, width: int) -> int:
        n, c, ci = height * width, self.channels, self.inter_channels
        return 3 * n * c * ci + 2 * n * n * ci + n * c + n * ci + n * ci * c + ci * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"pairwise": (B, 1, H, W) the query pixel's pairwise weights, "unary":
        (B, 1, H, W) the unary weights, the same for every query}. No state changes."""
        b, _, h, w = x.shape
        row, col = query if query is not None else (h // 2, w // 2)
        q, k, _, logits = self._project(x)
        index = row * w + col
        pairwise = self._pairwise(q[:, :, index : index + 1], k)  # (B, 1, 1, N)
        unary = torch.softmax(logits, dim=-1)  # (B, N)
        return {"pairwise": pairwise.view(b, 1, h, w), "unary": unary.view(b, 1, h, w)}
