"""LatentGNN: non-local relations through a small latent graph.

Paper: "LatentGNN: Learning Efficient Non-local Relations for Visual Recognition",
Zhang, He, Yan (arXiv 1905.11634), the asymmetric LatentGNN V1 with one kernel.

    v = l2norm_C(BN(1x1 C -> Ci)(x)),  w = l2norm_C(BN(1x1 C -> Ci)(x))      (B, Ci, N) each
    A_in  = l2norm_N(ReLU(BN(1x1 Ci -> d)(v)))      (B, d, N)   visible -> latent
    A_out = l2norm_d(ReLU(BN(1x1 Ci -> d)(w)))      (B, d, N)   latent -> visible
    Z  = A_in v^T                                    (B, d, Ci)  latent node features
    Z  = softmax_row(l2norm_Ci(Z) l2norm_Ci(Z)^T) Z  (B, d, Ci)  latent message passing
    y  = Z^T A_out                                   (B, Ci, N)
    out = x + gamma * BN(1x1 Ci -> C)(y),  gamma a scalar initialised to 0

l2norm is F.normalize (x / max(||x||, 1e-12)). Defaults: channel_stride=4 (Ci = C // 4,
the authors' default), latent_dim d=100 (this module's default; the authors' class takes
a list of latent sizes, one per kernel).

MACs for one sample, N = H*W:
    2*N*C*Ci (the two reductions) + 2*N*Ci*d (the two adjacency convs)
    + 2*N*d*Ci (Z and y) + 2*d*d*Ci (the latent affinity and its product) + N*Ci*C (output)
Norms, softmax, BN, ReLU and the residual are lower order and not counted.

Deviations from the authors' code (LatentGNNV1, asymmetric, one kernel,
graph_conv_flag=False): none in the arithmetic; the single kernel is built in rather than
a list of kernels. open_gate sets gamma to 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, relu: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class LatentGNN(nn.Module):
    """LatentGNN block: (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "visible_to_latent"
    MAIN_MAP_ARGMAX: str | None = "argmax of the visible-to-latent weights"
    EXTRA_MAP: str | None = "visible_to_latent"
    EXTRA_MAP_COUNT: int = 8
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, channel_stride: int = 4, latent_dim: int = 100) -> None:
        super().__init__()
        if channel_stride < 1 or latent_dim < 1:
            raise ValueError(
                f"LatentGNN needs channel_stride, latent_dim >= 1, got {channel_stride}, "
                f"{latent_dim}"
            )
        self.channels, self.latent_dim = channels, latent_dim
        self.inter_channels = ci = max(channels // channel_stride, 1)
        self.down_v2l = _conv_bn(channels, ci)
        self.down_l2v = _conv_bn(channels, ci)
        self.psi_v2l = _conv_bn(ci, latent_dim, relu=True)
        self.psi_l2v = _conv_bn(ci, latent_dim, relu=True)
        self.up = _conv_bn(ci, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _graph(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """v, w (B, Ci, N); A_in, A_out (B, d, N)."""
        v = F.normalize(self.down_v2l(x), dim=1)
        w = F.normalize(self.down_l2v(x), dim=1)
        a_in = F.normalize(self.psi_v2l(v).flatten(2), dim=2)
        a_out = F.normalize(self.psi_l2v(w).flatten(2), dim=1)
        return v.flatten(2), w.flatten(2), a_in, a_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        v, _, a_in, a_out = self._graph(x)
        z = torch.bmm(a_in, v.transpose(1, 2))  # (B, d, Ci)
        zn = F.normalize(z, dim=2)
        affinity = torch.bmm(zn, zn.transpose(1, 2)).softmax(dim=2)  # (B, d, d)
        z = torch.bmm(affinity, z)
        y = torch.bmm(z.transpose(1, 2), a_out).view(b, self.inter_channels, h, w)
        return x + self.gamma * self.up(y)

    def open_gate(self) -> None:
        """Start gamma at 1 instead of the authors' 0."""
        with torch.no_grad():
            self.gamma.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """gamma: the authors start it at 0."""
        return (self.gamma,)

    def macs(self, height: int, width: int) -> int:
        n, c, ci, d = height * width, self.channels, self.inter_channels, self.latent_dim
        return 2 * n * c * ci + 2 * n * ci * d + 2 * n * d * ci + 2 * d * d * ci + n * ci * c

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"visible_to_latent": (B, d, H, W)}: A_in, each latent node's weights over the
        positions; query is not used. BN statistics are restored afterwards."""
        b, _, h, w = x.shape
        saved = [t.clone() for t in self.buffers()]  # BN statistics move in train mode
        with torch.no_grad():
            _, _, a_in, _ = self._graph(x)
            for buffer, value in zip(self.buffers(), saved, strict=True):
                buffer.copy_(value)
        return {"visible_to_latent": a_in.reshape(b, self.latent_dim, h, w)}
