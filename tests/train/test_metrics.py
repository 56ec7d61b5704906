"""Confusion matrix and the segmentation metrics derived from it, against hand counts."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.train.metrics import confusion_matrix, segmentation_metrics


def test_confusion_matrix_hand_example() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    conf = confusion_matrix(pred, target, 3)
    # rows: ground truth, columns: prediction
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(conf, expected)
    assert conf.dtype == torch.long


def test_ignore_index_is_left_out() -> None:
    target = torch.tensor([0, 255, 1, 255])
    pred = torch.tensor([0, 1, 1, 0])
    conf = confusion_matrix(pred, target, 2)
    assert torch.equal(conf, torch.tensor([[1, 0], [0, 1]]))
    assert segmentation_metrics(conf)["pixel_acc"] == 100.0


def test_metrics_hand_example() -> None:
    # class 0: 1 hit, 2 in truth, 2 predicted -> IoU 1/3, acc 1/2
    # class 1: 2 hits, 2 in truth, 3 predicted -> IoU 2/3, acc 1
    # class 2: 1 hit, 2 in truth, 1 predicted -> IoU 1/2, acc 1/2
    conf = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    m = segmentation_metrics(conf)
    assert m["iou"] == pytest.approx([100 / 3, 200 / 3, 50.0])
    assert m["mIoU"] == pytest.approx((100 / 3 + 200 / 3 + 50) / 3)
    assert m["pixel_acc"] == pytest.approx(400 / 6)
    assert m["acc"] == pytest.approx([50.0, 100.0, 50.0])
    assert m["mean_acc"] == pytest.approx(200 / 3)


def test_absent_classes_leave_the_mean_as_in_mmsegmentation() -> None:
    # class 2: in neither truth nor prediction -> NaN, not in the mean.
    # class 3: predicted once, never in truth -> IoU 0 (counts), accuracy undefined.
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 3])
    m = segmentation_metrics(confusion_matrix(pred, target, 4))
    assert math.isnan(m["iou"][2]) and m["iou"][3] == 0.0
    assert m["mIoU"] == pytest.approx((100 + 50 + 0) / 3)
    assert math.isnan(m["acc"][2]) and math.isnan(m["acc"][3])
    assert m["mean_acc"] == pytest.approx((100 + 50) / 2)
    assert m["pixel_acc"] == pytest.approx(75.0)


def test_bincount_matches_a_plain_count() -> None:
    gen = torch.Generator().manual_seed(0)
    k = 5
    target = torch.randint(0, k, (2, 9, 7), generator=gen)
    target[0, :3] = 255
    pred = torch.randint(0, k, (2, 9, 7), generator=gen)
    slow = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True):
        if t != 255:
            slow[t, p] += 1
    assert torch.equal(confusion_matrix(pred, target, k), slow)


def test_empty_matrix_gives_nan_not_an_error() -> None:
    m = segmentation_metrics(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(m["mIoU"]) and math.isnan(m["pixel_acc"]) and math.isnan(m["mean_acc"])


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)
