"""Whole-image evaluation, optionally over several scales and a horizontal flip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..env import autocast
from .metrics import confusion_matrix, segmentation_metrics


def predict(
    model: nn.Module, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Class probabilities (B, K, H, W), averaged over scales and (optionally) a flip."""
    size = images.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        x = images
        if scale != 1.0:
            x = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            logits = model(x.flip(-1) if flipped else x)["out"]
            logits = logits.flip(-1) if flipped else logits
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    amp: bool = False,
) -> dict[str, Any]:
    """Whole-image metrics; under several processes the confusion matrices are summed."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            probs = predict(model, images, scales, flip)  # (B, K, H, W)
        conf += confusion_matrix(probs.argmax(1), labels, num_classes)
    distributed.all_reduce_sum(conf)
    model.train(was_training)
    return segmentation_metrics(conf)
