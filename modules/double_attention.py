"""Double attention block (A^2 block).

Paper: "A^2-Nets: Double Attention Networks", Chen, Kalantidis, Li, Yan, Feng
(arXiv 1810.11579).

    A = phi(x)   : 1x1 C -> c_m            (B, c_m, N)
    B = theta(x) : 1x1 C -> c_n            (B, c_n, N)
    V = rho(x)   : 1x1 C -> c_n            (B, c_n, N)
    gather      G = A softmax_N(B)^T        (B, c_m, c_n), each column a weighted mean over N
    distribute  Z = G softmax_{c_n}(V)      (B, c_m, N)
    out = x + W(Z),  W: 1x1 c_m -> C, weight and bias initialised to 0

Defaults: c_m = c_n = C // 4 (at least 1), gather="softmax".

gather="responsibility" replaces softmax_N(B) by R / (eps + sum_N R) with
R = softmax_{c_n}(B), eps = 1e-6: the normalisation of one EM step, under which
the gather equals the M-step of EM attention (see attnbench/studies/equivalence.py).
The eps is the one the EMA unit uses, so the two agree to rounding.

Public extra: `context(x)` returns Z as (B, c_m, H, W), the block before W and
the residual.

Order of the products: every column of softmax_{c_n}(V) sums to 1, so
W Z + b = (W G + b) softmax_{c_n}(V): W and its bias can go before the distribution
instead of after it. forward takes whichever order needs fewer MACs for the shape;
with c_m = c_n it is W first whenever C < N, which saves N*c_m*c_n MACs forward and
about twice that backward. The 1x1 convolutions run as batched matrix products
(one fused product for phi, theta and rho; the last product adds the residual): on
CPU, in float32, at (2, 256, 48, 48), a training step in the paper's order took
5-17 % less time that way than with conv2d, whose 1x1 case takes the slow_conv2d
path, and the order above took another 7 % off (tests/benchmarks/a2_forms.py).

MACs for one sample, N = H*W:
    N*C*(c_m + 2*c_n) (phi, theta, rho) + N*c_m*c_n (gather)
    + min(C*c_m*c_n + N*c_n*C, N*c_m*c_n + N*c_m*C) (W and the distribution, in the
      cheaper order)
Softmax, the biases and the residual sum are lower order and not counted.

Deviations: A2Net has no code by its authors (the GitHub account of its first
author, Yunpeng Chen, cypw, has none); only third-party versions exist, so this
follows the paper's equations. The softmax of the gather runs over positions, per sample and per
channel of B (several public copies normalise over channels or the batch).
W is zero-initialised (the paper does not say) so the block is the identity
at initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

GATHER_MODES = ("softmax", "responsibility")


class DoubleAttention(nn.Module):
    """A^2 block: gather global descriptors, distribute them back: (B, C, H, W) -> same."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "gather"  # the first gather map
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()
    EPS = 1e-6

    def __init__(
        self,
        channels: int,
        *,
        c_m: int | None = None,
        c_n: int | None = None,
        gather: str = "softmax",
    ) -> None:
        super().__init__()
        if gather not in GATHER_MODES:
            raise ValueError(f"gather must be one of {GATHER_MODES}, got {gather!r}")
        self.channels = channels
        self.c_m = c_m if c_m is not None else max(channels // 4, 1)
        self.c_n = c_n if c_n is not None else max(channels // 4, 1)
        self.gather = gather
        self.phi = nn.Conv2d(channels, self.c_m, 1)
        self.theta = nn.Conv2d(channels, self.c_n, 1)
        self.rho = nn.Conv2d(channels, self.c_n, 1)
        self.out_conv = nn.Conv2d(self.c_m, channels, 1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def _maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A (B, c_m, N), the gather map (B, c_n, N) and the distribute map (B, c_n, N)."""
        # phi, theta and rho as one product: x is read once, its gradient is one product.
        weight = torch.cat([self.phi.weight, self.theta.weight, self.rho.weight]).flatten(1)
        bias = torch.cat([self.phi.bias, self.theta.bias, self.rho.bias])
        maps = torch.baddbmm(bias[:, None], weight.expand(x.shape[0], -1, -1), x.flatten(2))
        a, b, v = maps.split([self.c_m, self.c_n, self.c_n], 1)  # (B, c, N) each
        if self.gather == "softmax":
            g_map = torch.softmax(b, dim=2)  # (B, c_n, N), sums to 1 over positions
        else:
            r = torch.softmax(b, dim=1)  # (B, c_n, N), sums to 1 over descriptors
            g_map = r / (self.EPS + r.sum(dim=2, keepdim=True))
        d_map = torch.softmax(v, dim=1)  # (B, c_n, N)
        return a, g_map, d_map

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """Z = G softmax_{c_n}(V) as (B, c_m, H, W): the block before W and the residual."""
        bsz, _, h, w = x.shape
        a, g_map, d_map = self._maps(x)
        g = a @ g_map.transpose(1, 2)  # (B, c_m, c_n)
        z = g @ d_map  # (B, c_m, N)
        return z.reshape(bsz, self.c_m, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bsz, c, h, w = x.shape
        a, g_map, d_map = self._maps(x)
        g = a @ g_map.transpose(1, 2)  # (B, c_m, c_n)
        weight = self.out_conv.weight.flatten(1).expand(bsz, -1, -1)  # (B, C, c_m)
        bias = self.out_conv.bias[:, None]  # (C, 1)
        if self._w_first(h * w):
            mix = torch.baddbmm(bias, weight, g)  # (B, C, c_n): W G + b
            out = torch.baddbmm(x.flatten(2), mix, d_map)  # x + (W G + b) D
        else:
            out = torch.baddbmm(x.flatten(2) + bias, weight, g @ d_map)  # x + b + W Z
        return out.view(bsz, c, h, w)

    def _w_first(self, n: int) -> bool:
        """Whether (W G) D needs fewer MACs than W (G D) at n positions."""
        w_first, distribution_first = self._output_macs(n)
        return w_first < distribution_first

    def _output_macs(self, n: int) -> tuple[int, int]:
        """MACs of W and the distribution at n positions: (W G) D and W (G D)."""
        c, c_m, c_n = self.channels, self.c_m, self.c_n
        return c * c_n * (c_m + n), n * c_m * (c_n + c)

    def open_gate(self) -> None:
        """Start W at nn.Conv2d's default initialisation instead of zero (the fairness ablation)."""
        self.out_conv.reset_parameters()

    def gates(self) -> tuple[nn.Parameter, ...]:
        """W, the output conv's weight (its bias adds a constant, no context)."""
        return (self.out_conv.weight,)

    def macs(self, height: int, width: int) -> int:
        n, c = height * width, self.channels
        projections = n * c * (self.c_m + 2 * self.c_n)
        return projections + n * self.c_m * self.c_n + min(self._output_macs(n))

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"gather": (B, c_n, H, W), "distribute": (B, c_n, H, W)}; query is not used."""
        bsz, _, h, w = x.shape
        _, g_map, d_map = self._maps(x)
        return {
            "gather": g_map.reshape(bsz, self.c_n, h, w),
            "distribute": d_map.reshape(bsz, self.c_n, h, w),
        }
