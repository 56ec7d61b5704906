"""The training loss: cross-entropy with ignore index 255 on the main output, plus
`aux_weight` times the same on the auxiliary one (docs/modules.md, the recipes).

Each output is compared with the labels at its own resolution: the input's when the
logits were upsampled to it (train.loss_resolution: input), the head's when they were
not (train.loss_resolution: head, the probes' recipe, docs/probe-protocol.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import IGNORE_INDEX


def labels_at(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) labels at (h, w): each output pixel takes the label under its centre
    (nearest-exact; at an integer stride s, labels[:, s // 2 :: s, s // 2 :: s])."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    sampled = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return sampled[:, 0].to(labels.dtype)  # (B, h, w)


def segmentation_loss(
    outputs: dict[str, torch.Tensor], labels: torch.Tensor, aux_weight: float
) -> torch.Tensor:
    """Cross-entropy of each output against the labels at that output's resolution."""
    out = outputs["out"]
    loss = F.cross_entropy(out, labels_at(labels, out.shape[-2:]), ignore_index=IGNORE_INDEX)
    if "aux" in outputs:
        aux_out = outputs["aux"]
        aux_labels = labels_at(labels, aux_out.shape[-2:])
        aux = F.cross_entropy(aux_out, aux_labels, ignore_index=IGNORE_INDEX)
        loss = loss + aux_weight * aux
    return loss
