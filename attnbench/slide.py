"""Sliding-window inference: the model sees crops, their logits are averaged where crops overlap.

This is mmsegmentation's `slide` test mode. Along each axis of an image of size L with
window c and stride s there are max(L - c + s - 1, 0) // s + 1 windows; window i starts
at i * s, is clipped to the image, and is shifted back so that it keeps its full size c
whenever the image is at least that long. Logits of the windows are summed into the full
image and divided by the number of windows covering each pixel. On an image no larger
than the window there is one window, the whole image: the result equals whole-image
inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
