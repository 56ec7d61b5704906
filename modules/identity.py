"""Identity: the baseline context module, which adds no context.

With it, the shared head is the plain FCN head of Fully Convolutional Networks
(Long et al., arXiv 1411.4038). Defaults: none. MACs: 0.
"""

from __future__ import annotations

import torch
from torch import nn


class Identity(nn.Module):
    """Returns its input unchanged; `channels` is accepted for the common interface."""

    FROZEN: tuple[str, ...] = ()
    MAIN_MAP: str | None = None
    MAIN_MAP_ARGMAX: str | None = None
    EXTRA_MAP: str | None = None
    EXTRA_MAP_COUNT: int = 0
    EVAL_OVERRIDES: tuple[tuple[str, str], ...] = ()

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def open_gate(self) -> None:
        """No gate: the block adds nothing."""

    def gates(self) -> tuple[nn.Parameter, ...]:
        return ()  # no zero-initialised gate

    def macs(self, height: int, width: int) -> int:
        return 0

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        return {}
