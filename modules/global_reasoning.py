"""Global reasoning unit (GloRe): project to a graph of nodes, reason, project back.

Paper: "Graph-Based Global Reasoning Networks", Chen, Rohrbach, Yan, Yan, Feng,
Kalantidis (arXiv 1811.12814).

    S = conv_state(x)        1x1 C -> Cs with bias        (B, Cs, N)   the node states' source
    P = conv_proj(x)         1x1 C -> K with bias         (B, K, N)    projection = reprojection
    V = S P^T                (B, Cs, K)    (times 1/N when normalize)   coordinate -> node space
    GCN over the K nodes:    H = V + V A^T + b_A          A: the node-wise 1x1 conv (K -> K, bias)
                             V' = W_s ReLU(H)              W_s: the state-wise 1x1 conv, no bias
    Y = V' P                 (B, Cs, N)                                  node -> coordinate space
    out = x + BN(conv_extend(Y))   conv_extend: 1x1 Cs -> C, no bias; BN eps 1e-4

Defaults: mid = C // 4 (at least 1), Cs = 2 * mid states, K = mid nodes (the authors'
num_s = 2 * num_mid, num_n = num_mid), normalize=False (the authors' default).

MACs for one sample, N = H*W:
    N*C*(Cs + K) (conv_state, conv_proj) + 2*N*Cs*K (V and Y) + Cs*K*K + Cs*Cs*K (GCN)
    + N*Cs*C (conv_extend)
BN, ReLU, the 1/N scale and the adds are lower order and not counted.

The final BN's gamma starts at 0 (the authors' code marks that BN "should be zero
initialized"), so the unit starts as the identity; open_gate starts it at 1.

Deviations from the authors' code (facebookresearch/GloRe, GloRe_Unit): none in the
arithmetic. The module maps C -> C at the head's width, with mid = C // 4 by default
(the authors choose num_mid per network). Their code advises normalize=True when the
input size is not fixed; the default keeps theirs (False).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalReasoning(nn.Module):
    """GloRe unit: (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "projection"
    MAIN_MAP_ARGMAX: str | None = "argmax of the node projection"
    EXTRA_MAP: str | None = "projection"
    EXTRA_MAP_COUNT: int = 8
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int, *, mid: int | None = None, normalize: bool = False) -> None:
        super().__init__()
        mid = max(channels // 4, 1) if mid is None else mid
        if mid < 1:
            raise ValueError(f"GloRe needs mid >= 1, got {mid}")
        self.channels, self.states, self.nodes = channels, 2 * mid, mid
        self.normalize = normalize
        self.conv_state = nn.Conv2d(channels, self.states, 1)
        self.conv_proj = nn.Conv2d(channels, self.nodes, 1)
        self.gcn_node = nn.Conv1d(self.nodes, self.nodes, 1)  # A: mixes nodes
        self.gcn_state = nn.Conv1d(self.states, self.states, 1, bias=False)  # W_s
        self.conv_extend = nn.Conv2d(self.states, channels, 1, bias=False)
        self.blocker = nn.BatchNorm2d(channels, eps=1e-4)
        nn.init.zeros_(self.blocker.weight)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S (B, Cs, N) and P (B, K, N) from one fused 1x1 convolution."""
        weight = torch.cat([self.conv_state.weight, self.conv_proj.weight])
        bias = torch.cat([self.conv_state.bias, self.conv_proj.bias])
        s, p = F.conv2d(x, weight, bias).flatten(2).split([self.states, self.nodes], dim=1)
        return s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s, p = self._project(x)
        v = torch.bmm(s, p.transpose(1, 2))  # (B, Cs, K)
        if self.normalize:
            v = v * (1.0 / (h * w))
        node = self.gcn_node(v.transpose(1, 2)).transpose(1, 2)  # (B, Cs, K): V A^T + b
        v = self.gcn_state(F.relu(node + v))  # (B, Cs, K)
        y = torch.bmm(v, p).view(b, self.states, h, w)  # (B, Cs, H, W)
        return x + self.blocker(self.conv_extend(y))

    def open_gate(self) -> None:
        """Start the final BN's gamma at 1 instead of 0."""
        with torch.no_grad():
            self.blocker.weight.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """blocker.weight, the final BN's gamma: it starts at 0."""
        return (self.blocker.weight,)

    def macs(self, height: int, width: int) -> int:
        n, c, cs, k = height * width, self.channels, self.states, self.nodes
        return n * c * (cs + k) + 2 * n * cs * k + cs * k * k + cs * cs * k + n * cs * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"projection": (B, K, H, W)}: P, each node's weight on every position (the same
        map projects to the nodes and back); query is not used."""
        b, _, h, w = x.shape
        _, p = self._project(x)
        return {"projection": p.reshape(b, self.nodes, h, w)}
