"""The mmseg-recipe parts of the training transform: (h, w) crops, base_size, cat_max_ratio."""

from __future__ import annotations

import torch

from attnbench.data.transforms import SegTransform, eval_transform, fit_factor


def _mixed(crop: torch.Tensor, ratio: float) -> bool:
    """The acceptance rule written out: >1 class, none at `ratio` of the labelled pixels."""
    labelled = crop[crop != 255]
    counts = [int((labelled == c).sum()) for c in labelled.unique()]
    return len(counts) > 1 and max(counts) < ratio * sum(counts)


def test_crops_are_height_by_width_and_base_size_scales_like_mmseg():
    assert fit_factor((1024, 2048), (2048, 1024)) == 1.0  # Cityscapes at its own scale
    assert fit_factor((375, 500), (2048, 512)) == 512 / 375  # ADE20K: the short side to 512
    assert fit_factor((300, 3000), (2048, 512)) == 2048 / 3000  # unless the long side passes
    torch.manual_seed(0)
    t = SegTransform(crop_size=(8, 16), scale_range=(1.0, 1.0), base_size=(40, 20), flip=True)
    x, y = t(torch.rand(3, 10, 20), torch.zeros(10, 20, dtype=torch.long))
    assert x.shape == (3, 8, 16) and y.shape == (8, 16)
    # Evaluation: the image is resized to fit (40, 20); the label keeps its size.
    x, y = eval_transform((40, 20))(torch.rand(3, 10, 30), torch.zeros(10, 30, dtype=torch.long))
    assert x.shape == (3, 13, 40) and y.shape == (10, 30)


def test_cat_max_ratio_redraws_crops_that_one_class_dominates():
    # 8 x 40: class 0 in columns 0-23, class 1 in 24-39. Of the 25 crop positions of width
    # 16, the 7 with 5 to 11 columns of class 1 (left edge 13-19) pass at 0.75: p = 0.28.
    label = torch.zeros(8, 40, dtype=torch.long)
    label[:, 24:] = 1
    image = torch.rand(3, 8, 40)
    rates = {}
    for ratio in (1.0, 0.75):
        t = SegTransform(crop_size=(8, 16), cat_max_ratio=ratio)
        passed = 0
        for seed in range(200):
            torch.manual_seed(seed)
            _, crop = t(image, label)
            passed += _mixed(crop, 0.75)
        rates[ratio] = passed / 200
    assert rates[1.0] < 0.45  # one draw: about 0.28
    assert rates[0.75] > 0.85  # up to ten draws: about 1 - 0.72^10 = 0.96


def test_cat_max_ratio_off_draws_exactly_as_before():
    label = torch.randint(0, 3, (12, 20))
    image = torch.rand(3, 12, 20)
    torch.manual_seed(3)
    plain = SegTransform(crop_size=(8, 8), scale_range=(0.5, 2.0), flip=True)(image, label)
    torch.manual_seed(3)
    off = SegTransform(crop_size=(8, 8), scale_range=(0.5, 2.0), flip=True, cat_max_ratio=1.0)(
        image, label
    )
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))
