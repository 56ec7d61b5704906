"""Expectation-Maximization Attention unit (EMAU).

Paper: "Expectation-Maximization Attention Networks for Semantic Segmentation",
Li, Zhong, Wu, Yang, Lin, Liu (arXiv 1907.13426).

    x      = conv1(x_in)                  1x1 C -> C with bias, frozen (see below)
    mu     = bases buffer (1, C, K), init normal(0, sqrt(2/K)), L2-normalised over C
    repeat T times, without gradient:
        E-step  z  = softmax_K(lambda * x^T mu)            (N, K)
        M-step  mu = x (z / (eps + sum_N z))               (C, K), then L2-normalised over C
    x~     = mu z^T                       (C, N), without gradient
    out    = ReLU(x_in + BN(conv2(ReLU(x~))))   conv2: 1x1 C -> C, no bias (BN follows)

Defaults: bases K=64, stages T=3, eval_stages=None (same as stages), momentum 0.1,
temperature lambda=1.0, l2_norm=True, bn_momentum=0.1; eps = 1e-6 (normalisations
as official).

bn_momentum is the momentum of the BN after conv2 (PyTorch's convention: the weight
of the new batch statistics). The official code builds every BN, this one included,
with momentum 3e-4 (settings.BN_MOM); bn_momentum=3e-4 reproduces it, the default
keeps PyTorch's 0.1 (as mmseg's EMAHead does).

Bases maintenance, training mode only: after the forward pass
    mu0 <- (1 - m) mu0 + m * l2norm(mean over the batch of mu_T)
Under torch.distributed the batch mean is averaged over all ranks first
(all_reduce), so every rank keeps identical bases. The bases are then
L2-normalised again (a deviation, listed below).

conv1 is frozen (requires_grad False, FROZEN): the official code computes z and
mu under torch.no_grad, so the reconstruction x~ carries no gradient back to
conv1 and conv1 keeps its initial weights for the whole run. Freezing states
this openly (and keeps an optimiser's weight decay off it).

`stages` and `eval_stages` are plain attributes and may be changed after
construction (the benchmark sweeps eval_stages, the paper's T_train x T_eval grid).

Public extra: `reconstruct(x_in)` returns x~ (B, C, H, W) for the current mode's
stage count, without updating the bases.

MACs for one sample, N = H*W, T = the stage count of the current mode:
    2*N*C^2 (conv1, conv2) + T*2*N*K*C (E- and M-step products) + N*K*C (x~ = mu z^T)
Softmax, norms, BN and the bases update are lower order and not counted.

Deviations from the official code (XiaLiPKU/EMANet):
- the BN after conv2 starts with gamma 0 (official: 1), so at initialisation
  out = ReLU(x_in), the identity on the non-negative (post-ReLU) features the
  shared head feeds in.
- the batch mean of mu_T is L2-normalised before the moving average (as the
  SPEC and mmseg do; the official train.py averages it unnormalised), and is
  averaged over ranks under distributed training (official: DataParallel
  gathers all samples on one device instead).
- after the moving average the bases are L2-normalised again, so they stay
  unit-norm per basis (SPEC, mmseg and the official code leave the mix, of
  norm <= 1, as it is). After one update the two differ by a per-basis scale only;
  over more updates they drift apart: in a float64 check against the official code
  (20 steps, m = 0.1) its bases shrank to norms 0.67-0.82 and the smallest per-basis
  cosine between the two fell to 0.94.
- the BN after conv2 uses bn_momentum 0.1 by default (official: 3e-4, see above).
- the moving average lives in the module (official: in train.py), with
  momentum m = 0.1 meaning the weight of the new estimate (official EM_MOM 0.9
  is the weight of the old one: the same update).
- the EM iterations run in at least float32 with autocast disabled, since the
  energies' exponentials overflow in half precision; conv1 before them follows autocast.
- temperature, eval_stages and the l2_norm switch are additions (defaults
  reproduce the official unit); l2_norm=False skips the M-step normalisation
  only, the moving average still normalises the batch mean.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn


def _check_stages(name: str, value: int) -> int:
    # A float such as 4.0 (a YAML sweep value) is accepted; 2.5 or 0 is not.
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"EMAUnit {name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _l2norm(t: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    return t / (eps + t.norm(dim=dim, keepdim=True))


class EMAUnit(nn.Module):
    """EM attention unit: (B, C, H, W) -> (B, C, H, W), with bases kept as a buffer."""

    FROZEN: tuple[str, ...] = ("conv1.weight", "conv1.bias")
    # The report draws the base each pixel is most responsible to, and the first
    # EXTRA_MAP_COUNT bases' responsibilities in a figure of their own.
    MAIN_MAP: str | None = "responsibilities"
    MAIN_MAP_ARGMAX: str | None = "argmax of z"
    EXTRA_MAP: str | None = "responsibilities"
    EXTRA_MAP_COUNT: int = 8
    # eval_stages replaces stages at evaluation (the T_train x T_eval sweep).
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = (("eval_stages", "stages"),)
    EPS = 1e-6

    def __init__(
        self,
        channels: int,
        *,
        bases: int = 64,
        stages: int = 3,
        eval_stages: int | None = None,
        momentum: float = 0.1,
        temperature: float = 1.0,
        l2_norm: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if bases < 1:
            raise ValueError(f"EMAUnit needs at least one basis, got bases={bases}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMAUnit momentum must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"EMAUnit temperature must be positive, got {temperature}")
        self.channels = channels
        self.bases = bases
        self.stages = stages
        self.eval_stages = eval_stages
        self.momentum = momentum
        self.temperature = temperature
        self.l2_norm = l2_norm
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels, momentum=bn_momentum)
        # Kaiming-normal over fan-out, as the official unit initialises its convs.
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / channels))
        nn.init.zeros_(self.bn.weight)
        self.conv1.requires_grad_(False)
        mu = torch.empty(1, channels, bases).normal_(0.0, math.sqrt(2.0 / bases))
        self.register_buffer("mu", _l2norm(mu, 1, self.EPS))  # (1, C, K)

    @property
    def stages(self) -> int:
        return self._stages

    @stages.setter
    def stages(self, value: int) -> None:
        self._stages = _check_stages("stages", value)

    @property
    def eval_stages(self) -> int | None:
        return self._eval_stages

    @eval_stages.setter
    def eval_stages(self, value: int | None) -> None:
        self._eval_stages = None if value is None else _check_stages("eval_stages", value)

    def active_stages(self) -> int:
        """EM stages the current mode runs: eval_stages in eval mode when set, else stages."""
        if self.training or self.eval_stages is None:
            return self.stages
        return self.eval_stages

    def _em(self, x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns x~ (B, C, N), mu_T (B, C, K) and the last z (B, N, K), all without grad."""
        with torch.no_grad():
            # conv1 follows the caller's autocast like every other convolution (no float32
            # convolution inside a bf16 network).
            feat = self.conv1(x_in)
        with torch.no_grad(), torch.autocast(x_in.device.type, enabled=False):
            dtype = torch.promote_types(feat.dtype, torch.float32)
            x = feat.flatten(2).to(dtype)  # (B, C, N)
            mu = self.mu.to(dtype).expand(x.shape[0], -1, -1)  # (B, C, K)
            for _ in range(self.active_stages()):
                # lambda and the 1 / sum_N z normalisation act per basis: applying them to
                # the (C, K) bases rather than the (N, K) maps is the same arithmetic, N/C
                # times cheaper.
                z = torch.softmax(x.transpose(1, 2) @ (self.temperature * mu), dim=2)  # (B, N, K)
                mu = (x @ z) / (self.EPS + z.sum(dim=1, keepdim=True))  # (B, C, K)
                if self.l2_norm:
                    mu = _l2norm(mu, 1, self.EPS)
            x_rec = mu @ z.transpose(1, 2)  # (B, C, N)
        return x_rec, mu, z

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x~ = mu_T z_T^T as (B, C, H, W) for input x; no gradient, bases unchanged."""
        x_rec, _, _ = self._em(x)
        return x_rec.reshape(x.shape).to(x.dtype)

    @torch.no_grad()
    def _update_bases(self, mu: torch.Tensor) -> None:
        mean = mu.mean(dim=0, keepdim=True)  # (1, C, K)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        mean = _l2norm(mean, 1, self.EPS).to(self.mu.dtype)
        self.mu.mul_(1.0 - self.momentum).add_(mean, alpha=self.momentum)
        # The mix of two unit vectors is shorter than either; the E-step's energies
        # assume unit bases, so put them back on the sphere.
        self.mu.copy_(_l2norm(self.mu, 1, self.EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_rec, mu, _ = self._em(x)
        if self.training:
            self._update_bases(mu)
        x_rec = x_rec.reshape(x.shape).to(x.dtype).relu_()  # no gradient: in place is safe
        return (x + self.bn(self.conv2(x_rec))).relu_()

    def open_gate(self) -> None:
        """Start the output BN's gamma at 1 (the official code's value) instead of 0."""
        with torch.no_grad():
            self.bn.weight.fill_(1.0)

    def gates(self) -> tuple[nn.Parameter, ...]:
        """bn.weight, the output BN's gamma: started at 0 here (docs/modules.md), at 1 in
        the official code."""
        return (self.bn.weight,)

    def macs(self, height: int, width: int) -> int:
        n, c, k = height * width, self.channels, self.bases
        return 2 * n * c * c + self.active_stages() * 2 * n * k * c + n * k * c

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"responsibilities": (B, K, H, W)}: z of the last stage; query is not used.

        Runs the EM iterations of the current mode without touching the bases.
        """
        b, _, h, w = x.shape
        _, _, z = self._em(x)
        return {"responsibilities": z.transpose(1, 2).reshape(b, self.bases, h, w)}
