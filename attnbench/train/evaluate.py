"""Evaluation: whole images or sliding windows, optionally over several scales and a flip.

Sliding windows are mmsegmentation's `slide` test mode. Along each axis of an image of
size L with window c and stride s there are max(L - c + s - 1, 0) // s + 1 windows;
window i starts at i * s, is clipped to the image, and is shifted back so that it keeps
its full size c whenever the image is at least that long. Logits of the windows are
summed into the full image and divided by the number of windows covering each pixel. On
an image no larger than the window there is one window, the whole image: the result is
whole-image inference.

Predictions are scored at the label's size: an image resized for evaluation (ADE20K's
short side of 512) has its class probabilities resized back first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed
from ..env import autocast
from .metrics import confusion_matrix, segmentation_metrics

Slide = tuple[tuple[int, int], tuple[int, int]]  # (window, stride), each (height, width)


def predict(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    *,
    slide: Slide | None = None,
    size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Class probabilities (B, K, *size), averaged over scales and (optionally) a flip.

    slide: (window, stride) for sliding-window logits, None for whole images. size: the
    output size (the labels'), by default the images'.
    """
    size = tuple(size or images.shape[-2:])
    total: torch.Tensor | None = None

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x)["out"]  # (B, K, h, w) at the input's size

    for scale in scales:
        x = images
        if scale != 1.0:
            x = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            view = x.flip(-1) if flipped else x
            logits = forward(view) if slide is None else slide_logits(forward, view, *slide)
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
    slide: Slide | None = None,
    amp: bool = False,
) -> dict[str, Any]:
    """Metrics over the loader; under several processes the confusion matrices are summed."""
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
            probs = predict(model, images, scales, flip, slide=slide, size=labels.shape[-2:])
        conf += confusion_matrix(probs.argmax(1), labels, num_classes)
    distributed.all_reduce_sum(conf)
    model.train(was_training)
    return segmentation_metrics(conf)


def window_starts(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of every window along one axis of `length` pixels."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
    count = max(length - window + stride - 1, 0) // stride + 1
    spans = []
    for i in range(count):
        end = min(i * stride + window, length)
        spans.append((max(end - window, 0), end))
    return spans


def slide_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    """Logits (B, K, H, W) of `forward` (images (B, 3, h, w) -> logits (B, K, h, w)), by windows."""
    height, width = images.shape[-2:]
    total: torch.Tensor | None = None
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for top, bottom in window_starts(height, window[0], stride[0]):
        for left, right in window_starts(width, window[1], stride[1]):
            logits = forward(images[..., top:bottom, left:right]).float()  # (B, K, h, w)
            if total is None:
                total = logits.new_zeros((*logits.shape[:2], height, width))
            total[..., top:bottom, left:right] += logits
            count[..., top:bottom, left:right] += 1
    assert total is not None
    return total / count
