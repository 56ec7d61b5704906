"""Sliding-window inference against whole-image inference and a hand-built average."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnbench.train.evaluate import slide_logits, window_starts


def context_model(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) -> (B, 4, h, w) logits that depend on the whole input (its mean)."""
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, dtype=images.dtype)
    local = F.conv2d(images, weight, padding=1)
    return local + images.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1) * torch.arange(4.0).view(1, 4, 1, 1)


def test_window_starts_cover_the_axis_like_mmseg_slide():
    assert window_starts(10, 16, 8) == [(0, 10)]  # shorter than the window: one, the whole axis
    assert window_starts(16, 16, 8) == [(0, 16)]
    assert window_starts(20, 16, 8) == [(0, 16), (4, 20)]  # the last one is shifted back
    assert window_starts(33, 16, 8) == [(0, 16), (8, 24), (16, 32), (17, 33)]


def test_slide_equals_whole_image_on_an_image_smaller_than_the_window():
    images = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    whole = context_model(images)
    assert torch.equal(slide_logits(context_model, images, (16, 16), (8, 8)), whole.float())


def test_slide_averages_overlapping_windows_as_a_direct_computation_does():
    images = torch.randn(1, 3, 12, 20, dtype=torch.float64)
    window, stride = (8, 12), (4, 8)
    # Rows: windows [0, 8), [4, 12); columns: [0, 12), [8, 20). Built by hand, pixel by pixel.
    rows, cols = [(0, 8), (4, 12)], [(0, 12), (8, 20)]
    total = torch.zeros(1, 4, 12, 20, dtype=torch.float64)
    count = torch.zeros(12, 20, dtype=torch.float64)
    for top, bottom in rows:
        for left, right in cols:
            crop_logits = context_model(images[:, :, top:bottom, left:right])
            for y in range(top, bottom):
                for x in range(left, right):
                    total[0, :, y, x] += crop_logits[0, :, y - top, x - left]
                    count[y, x] += 1
    expected = total / count
    assert count.min() == 1 and count.max() == 4  # the centre is seen by all four windows
    got = slide_logits(context_model, images, window, stride)
    torch.testing.assert_close(got, expected.float(), rtol=1e-6, atol=1e-6)
    # And it is not whole-image inference: the windows see different means.
    assert not torch.allclose(got, context_model(images).float(), atol=1e-3)
