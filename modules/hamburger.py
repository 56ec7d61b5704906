"""Hamburger with NMF: low-rank matrix decomposition as global context.

Paper: "Is Attention Better Than Matrix Decomposition?", Geng, Guo, Chen, Li, Wei, Lin
(arXiv 2109.04553), the "ham" of SegNeXt's LightHamHead (arXiv 2209.08575).

    x   = ReLU(ham_in(x_in))              ham_in: 1x1 C -> C with bias
    X   = x as (S, D, N), D = C / S       S groups, each factorised on its own
    bases U0 (D, R): uniform [0, 1) entries, L2-normalised over D
    V0  = softmax_R(X^T U0)               (N, R)
    repeat T times, without gradient (multiplicative updates of NMF, eps = 1e-6):
        V = V * (X^T U) / (V U^T U + eps)
        U = U * (X V)   / (U V^T V + eps)
    once more with gradient (the one-step gradient):  V = V * (X^T U) / (V U^T U + eps)
    x~  = U V^T                           (D, N) per group, back to (C, H, W)
    out = ReLU(x_in + GN(ham_out(x~)))     ham_out: 1x1 C -> C, no bias (the norm follows)

Defaults: rank R=64, groups S=1, train_steps=6, eval_steps=7 (mmseg's NMF2D defaults),
rand_init=True. The norm after ham_out is GroupNorm with gcd(32, C/2) groups: 32 for
C = 512, as SegNeXt's and HamNet's configs (GN with 32 groups); fewer for small C so
that every group has two channels at least.

The one-step gradient: the T updates run under no_grad and U, V enter the last
update as constants, so the gradient reaches x (and ham_in) only through X^T U in the
last coefficient update and through x~ = U V^T. This is the paper's method and the
authors' original code (Gsunshine/Enjoy-Hamburger, seg/HamNet: local_inference under
torch.no_grad); their later mmseg-based port (seg_mm) comments the no_grad out, and
mmseg's NMF2D has none.

Bases: with rand_init=True, training draws fresh U0 for every sample and call from
torch's global generator (as the authors and mmseg do); evaluation uses the fixed draw
kept in the buffer `bases` (S, D, R), made at construction, so that evaluation is
deterministic. rand_init=False uses the buffer in both modes (mmseg's rand_init=False
path). The updates run in at least float32 with autocast disabled.

`train_steps` and `eval_steps` are plain attributes (an evaluation may change eval_steps).

MACs for one sample, N = H*W, T = the step count of the current mode:
    2*N*C^2 (ham_in, ham_out) + N*C*R (V0) + T*(2*N*C*R + 2*S*N*R^2 + 2*C*R^2)
    + N*C*R + S*N*R^2 + C*R^2 (the last coefficient update) + N*C*R (x~)
Softmax, the elementwise updates, GN and ReLU are lower order and not counted.

Deviations:
- mmseg's NMF2D runs the T updates with autograd on (back-propagation through every
  step, T times the saved activations); this module keeps the authors' one-step
  gradient. The forward values are the same (tests/benchmarks/peers_psa_ham.py).
- evaluation with rand_init=True uses the fixed buffer instead of fresh random bases
  (the authors' and mmseg's evaluation draws new ones, so it is not deterministic).
- Hamburger has no zero-initialised gate: open_gate is a no-op.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def _step_coef(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """V * (X^T U) / (V U^T U + eps): x (G, D, N), bases (G, D, R), coef (G, N, R)."""
    numerator = torch.bmm(x.transpose(1, 2), bases)  # (G, N, R)
    denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))  # (G, N, R)
    return coef * numerator / (denominator + EPS)


def _step_bases(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """U * (X V) / (U V^T V + eps)."""
    numerator = torch.bmm(x, coef)  # (G, D, R)
    denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))  # (G, D, R)
    return bases * numerator / (denominator + EPS)


class Hamburger(nn.Module):
    """Hamburger (NMF): (B, C, H, W) -> (B, C, H, W)."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = "coefficients"
    MAIN_MAP_ARGMAX: str | None = "argmax of the NMF coefficients"
    EXTRA_MAP: str | None = "coefficients"
    EXTRA_MAP_COUNT: int = 8
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(
        self,
        channels: int,
        *,
        rank: int = 64,
        groups: int = 1,
        train_steps: int = 6,
        eval_steps: int = 7,
        rand_init: bool = True,
    ) -> None:
        super().__init__()
        if rank < 1 or groups < 1 or channels % groups:
            raise ValueError(
                f"Hamburger needs rank >= 1 and groups >= 1 dividing channels={channels}, "
                f"got rank={rank}, groups={groups}"
            )
        if min(train_steps, eval_steps) < 0:
            raise ValueError(f"Hamburger steps must be >= 0, got {train_steps}, {eval_steps}")
        self.channels, self.rank, self.groups = channels, rank, groups
        self.train_steps, self.eval_steps = train_steps, eval_steps
        self.rand_init = rand_init
        self.ham_in = nn.Conv2d(channels, channels, 1)
        self.ham_out = nn.Conv2d(channels, channels, 1, bias=False)
        # At least two channels a group, so that a 1 x 1 map still has a spread.
        self.norm = nn.GroupNorm(math.gcd(32, max(channels // 2, 1)), channels)
        self.register_buffer("bases", self._draw(groups))  # (S, D, R)

    def _draw(self, count: int, like: torch.Tensor | None = None) -> torch.Tensor:
        d = self.channels // self.groups
        bases = torch.rand(count, d, self.rank)
        if like is not None:
            bases = bases.to(like)
        return F.normalize(bases, dim=1)

    def active_steps(self) -> int:
        return self.train_steps if self.training else self.eval_steps

    def _decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U (B*S, D, R) without gradient and V (B*S, N, R) with the one-step gradient."""
        b, c, h, w = x.shape
        with torch.autocast(x.device.type, enabled=False):
            dtype = torch.promote_types(x.dtype, torch.float32)
            flat = x.reshape(b * self.groups, c // self.groups, h * w).to(dtype)  # (G, D, N)
            with torch.no_grad():
                if self.rand_init and self.training:
                    bases = self._draw(b * self.groups, flat)
                else:
                    bases = self.bases.to(dtype).repeat(b, 1, 1)
                coef = torch.softmax(torch.bmm(flat.transpose(1, 2), bases), dim=-1)
                for _ in range(self.active_steps()):
                    coef = _step_coef(flat, bases, coef)
                    bases = _step_bases(flat, bases, coef)
            return bases, _step_coef(flat, bases, coef)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enjoy = F.relu(self.ham_in(x))
        bases, coef = self._decompose(enjoy)
        with torch.autocast(x.device.type, enabled=False):
            recon = torch.bmm(bases, coef.transpose(1, 2))  # (B*S, D, N)
        recon = recon.reshape(x.shape).to(enjoy.dtype)
        return F.relu(x + self.norm(self.ham_out(recon)))

    def open_gate(self) -> None:
        """No zero-initialised gate: nothing to open."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()

    def macs(self, height: int, width: int) -> int:
        n, c, r, s = height * width, self.channels, self.rank, self.groups
        step = 2 * n * c * r + 2 * s * n * r * r + 2 * c * r * r
        last = n * c * r + s * n * r * r + c * r * r
        return 2 * n * c * c + n * c * r + self.active_steps() * step + last + n * c * r

    @torch.no_grad()
    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """{"coefficients": (B, R, H, W)}: V of the first group, each position's weight on
        every basis; query is not used. In training mode with rand_init, new random bases."""
        b, _, h, w = x.shape
        _, coef = self._decompose(F.relu(self.ham_in(x)))
        coef = coef.view(b, self.groups, h * w, self.rank)[:, 0]  # (B, N, R)
        return {"coefficients": coef.transpose(1, 2).reshape(b, self.rank, h, w)}
