"""Segmentation metrics from a confusion matrix: IoU per class, mIoU, pixel and mean accuracy.

The matrix is counted with one `bincount` over `num_classes * target + prediction`;
rows are the ground truth, columns the prediction. Pixels labelled `ignore_index`
(255) are left out. As in mmsegmentation, a class absent from both the ground truth
and the prediction has an undefined IoU (NaN) and is left out of the mean; a class
that is predicted but absent from the ground truth has IoU 0 and counts. The mean
accuracy likewise averages only over classes present in the ground truth.
All figures are percentages (0-100).
"""

from __future__ import annotations

import math

import torch

from ..data.transforms import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; entry [t, p] = pixels of class t predicted p."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    index = num_classes * target[keep] + pred[keep]
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_metrics(conf: torch.Tensor) -> dict[str, object]:
    """mIoU, pixel_acc, mean_acc (floats) and per-class iou, acc (lists, NaN where undefined)."""
    conf = conf.double().cpu()
    hits = conf.diag()  # (K,)
    in_target = conf.sum(1)  # pixels of each class in the ground truth
    in_pred = conf.sum(0)
    union = in_target + in_pred - hits
    iou = hits / union  # 0/0 -> NaN: absent from both, left out of the mean
    acc = hits / in_target
    total = conf.sum()
    return {
        "mIoU": _nanmean(iou) * 100,
        "pixel_acc": float(hits.sum() / total) * 100 if total > 0 else math.nan,
        "mean_acc": _nanmean(acc) * 100,
        "iou": [float(v) * 100 for v in iou],
        "acc": [float(v) * 100 for v in acc],
    }


def _nanmean(values: torch.Tensor) -> float:
    present = values[~values.isnan()]
    return float(present.mean()) if present.numel() else math.nan
