"""Non-local block, embedded-Gaussian form.

Paper: "Non-local Neural Networks", Wang, Girshick, Gupta, He (arXiv 1711.07971).

    theta, phi, g : 1x1 convs C -> Ci, Ci = C // reduction (at least 1)
    a_ij = softmax_j(s * theta_i . phi_j),   s = Ci^-0.5 if use_scale else 1
    y_i  = sum_j a_ij g_j
    out  = x + BN(W_z y),   W_z: 1x1 Ci -> C without bias, BN gamma initialised to 0

Defaults: reduction=2, use_scale=True, sub_sample=False, pool_input=False,
init_std=None, use_sdpa=True.

sub_sample applies a 2x2 max-pool with stride 2 to phi(x) and g(x) (the keys and
values), as mmcv and the AlexHex7 port do. The pool uses ceil_mode, so an odd last
row or column forms its own window and sides of length 1 work:
Nk = ceil(H/2) * ceil(W/2) keys. pool_input=True (with sub_sample) pools the block
*input* instead and runs phi and g on the pooled map, as the authors' Caffe2 original
does (USE_MAXPOOL = True by default there); max-pooling does not commute with a 1x1
convolution, so the two are different functions of x.

init_std=None keeps PyTorch's default initialisation of theta, phi, g and W_z;
init_std=0.01 initialises them as the Caffe2 original: Gaussian weights of that
standard deviation and zero biases.

Two implementations of one function, chosen by use_sdpa:
- True (default): torch.nn.functional.scaled_dot_product_attention on 4-D
  (B, 1, N, Ci) queries and (B, 1, Nk, Ci) keys and values whose last dimension
  is contiguous. That is what lets a fused kernel serve the call; a 3-D call, or a
  transposed view, falls back to the math kernel, which builds the N x Nk matrix.
  Kernels (torch 2.x): on CPU one flash-attention kernel serves every floating
  dtype (float32, float64, bfloat16, float16) and any head size, forward and
  backward, O(N) memory. On CUDA, flash serves fp16/bf16 up to head size 256
  (its backward past 192 needs sm80/sm90), cuDNN bf16/fp16 up to 128, the
  memory-efficient kernel also float32 (mind head sizes past 256: fall-back or
  slow backward); otherwise the math kernel, O(N * Nk) memory. The head size
  is Ci = C // reduction (256 for C = 512); sub_sample changes only the key
  count Nk. The CUDA facts are PyTorch's, not measured here.
- False: the explicit N x Nk attention matrix, the form `attention_maps` uses.
Why SDPA is the default (time and memory against the explicit path): see
tests/benchmarks/sdpa_choice.py and sdpa_memory.py. The scale is always passed to
SDPA explicitly, so use_scale=False means scale 1.0 there as well; the explicit path
multiplies the queries by it (an N x Ci product instead of an N x Nk one).

MACs for one sample, N = H*W, Nk = N (or ceil(H/2)*ceil(W/2) with sub_sample):
    3*N*C*Ci (theta, phi, g as one 1x1 conv; the pool follows it) + 2*N*Nk*Ci (theta^T phi, a g)
    + N*Ci*C (W_z)
with pool_input, phi and g run on the Nk pooled positions: N*C*Ci + 2*Nk*C*Ci in place
of 3*N*C*Ci. The max-pool, softmax and BN are lower order and not counted.

What the originals do, and where this block differs:
- the scale: the authors' Caffe2 original (video-nonlocal-net) scales by Ci^-0.5
  (USE_SCALE = True in all its shipped configs), as mmcv's NonLocal2d does; only the
  popular third-party port (AlexHex7) has no scale. use_scale=False reproduces it.
- the block ends with BN whose gamma starts at 0, as in the Caffe2 original
  (BN_INIT_GAMMA = 0): the block is the identity at initialisation.
- sub-sampling: the Caffe2 original pools the input (pool_input=True); mmcv and
  AlexHex7 pool phi(x) and g(x) (the default here). mmcv pools with floor mode,
  which drops an odd last row/column and fails on a side of length 1; this block
  uses ceil_mode in both places.
- initialisation: the Caffe2 original's Gaussian(0.01) with zero biases is
  init_std=0.01 (mmcv's NonLocal2d draws theta, phi and g the same way); the default
  keeps PyTorch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block: (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "attention"  # the query pixel's weights
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
        sub_sample: bool = False,
        pool_input: bool = False,
        init_std: float | None = None,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if pool_input and not sub_sample:
            raise ValueError("pool_input=True chooses where sub_sample pools: set sub_sample=True")
        self.channels = channels
        self.inter_channels = max(channels // reduction, 1)
        self.use_scale = use_scale
        self.sub_sample = sub_sample
        self.pool_input = pool_input
        self.use_sdpa = use_sdpa
        ci = self.inter_channels
        self.theta = nn.Conv2d(channels, ci, 1)
        self.phi = nn.Conv2d(channels, ci, 1)
        self.g = nn.Conv2d(channels, ci, 1)
        self.out_conv = nn.Conv2d(ci, channels, 1, bias=False)
        self.out_bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.out_bn.weight)
        if init_std is not None:  # the Caffe2 original's initialisation
            for conv in (self.theta, self.phi, self.g, self.out_conv):
                nn.init.normal_(conv.weight, 0.0, init_std)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)

    @property
    def scale(self) -> float:
        return self.inter_channels**-0.5 if self.use_scale else 1.0

    def _pool(self, t: torch.Tensor) -> torch.Tensor:
        if not self.sub_sample:
            return t
        return F.max_pool2d(t, kernel_size=2, stride=2, ceil_mode=True)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, 1, N, Ci), k and v (B, 1, Nk, Ci), position-major with unit stride on Ci."""
        ci = self.inter_channels
        if self.pool_input:
            return self._qkv_pooled_input(x)
        # theta, phi and g read x once as one conv: one GEMM, one input gradient.
        weight = torch.cat([self.theta.weight, self.phi.weight, self.g.weight])
        bias = torch.cat([self.theta.bias, self.phi.bias, self.g.bias])
        proj = F.conv2d(x, weight, bias)  # (B, 3Ci, H, W)
        if not self.sub_sample:
            return _positions_first(proj).split(ci, dim=-1)
        k, v = _positions_first(self._pool(proj[:, ci:])).split(ci, dim=-1)
        return _positions_first(proj[:, :ci]), k, v

    def _qkv_pooled_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The Caffe2 original's order: phi and g on the 2x2 max-pooled input."""
        pooled = self._pool(x)  # (B, C, ceil(H/2), ceil(W/2))
        weight = torch.cat([self.phi.weight, self.g.weight])
        bias = torch.cat([self.phi.bias, self.g.bias])
        k, v = _positions_first(F.conv2d(pooled, weight, bias)).split(self.inter_channels, -1)
        return _positions_first(self.theta(x)), k, v

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # Scaling the queries costs N x Ci multiplies; scaling the product would cost
        # N x Nk, and as many again in backward.
        return torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)  # (B, 1, N, Nk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self._qkv(x)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, 1, N, Ci)
        else:
            y = self._weights(q, k) @ v  # (B, 1, N, Ci)
        # A contiguous (B, Ci, H, W) input keeps the output conv on its fast path.
        y = y.transpose(-2, -1).contiguous().view(b, self.inter_channels, h, w)
        return x + self.out_bn(self.out_conv(y))

    def open_gate(self) -> None:
        """Start the output BN's gamma at 1 instead of the paper's 0 (the fairness ablation)."""
        with torch.no_grad():
            self.out_bn.weight.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """out_bn.weight: the paper starts it at 0."""
        return (self.out_bn.weight,)

    def macs(self, height: int, width: int) -> int:
        n = height * width
        nk = -(-height // 2) * -(-width // 2) if self.sub_sample else n
        c, ci = self.channels, self.inter_channels
        projections = (n + 2 * nk) * c * ci if self.pool_input else 3 * n * c * ci
        return projections + 2 * n * nk * ci + n * ci * c

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"attention": (B, 1, H, W)}: the query pixel's weights over all positions.

        With sub_sample each pixel shows the weight of the pooled key whose 2x2
        window covers it (so the map sums to more than 1). No state changes.
        """
        b, _, h, w = x.shape
        row, col = query if query is not None else (h // 2, w // 2)
        q, k, _ = self._qkv(x)
        a = self._weights(q[:, :, row * w + col : row * w + col + 1], k)  # (B, 1, 1, Nk)
        if not self.sub_sample:
            return {"attention": a.reshape(b, 1, h, w)}
        hk, wk = -(-h // 2), -(-w // 2)
        a = a.reshape(b, 1, hk, wk).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return {"attention": a[:, :, :h, :w]}


def _positions_first(t: torch.Tensor) -> torch.Tensor:
    """(B, c, H, W) -> (B, 1, H*W, c), contiguous: the 4-D layout fused SDPA kernels take."""
    return t.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)
