"""Data sets: the embedded synthetic task and Pascal VOC 2012, behind two builders.

`build_dataset(cfg, split, train)` returns a torch Dataset of (image float32 (3, H, W)
normalised with the ImageNet statistics, label int64 (H, W), 255 = ignore);
`dataset_info(cfg)` gives the class count and names without touching any file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch.utils.data import Dataset

from ..errors import UserError

DATASETS = ("synthetic", "voc")


class DatasetInfo(NamedTuple):
    num_classes: int
    class_names: tuple[str, ...]


def _check_dataset(cfg: Any) -> str:
    if cfg.dataset not in DATASETS:
        raise UserError(f"data.dataset must be one of {', '.join(DATASETS)}, got {cfg.dataset!r}")
    return cfg.dataset


def dataset_info(cfg: Any) -> DatasetInfo:
    """Number of classes and their names for cfg.dataset (a DataConfig)."""
    if _check_dataset(cfg) == "synthetic":
        from .synthetic import CLASS_NAMES
    else:
        from .voc import CLASS_NAMES
    return DatasetInfo(len(CLASS_NAMES), CLASS_NAMES)


def build_dataset(cfg: Any, split: str, train: bool) -> Dataset:
    """The `split` ("train" | "val") of cfg.dataset, augmented when `train`.

    synthetic: train_size / val_size images of image_size pixels, keyed by data_seed;
    augmentation is a horizontal flip only (crop_size and scale_range do not apply:
    cropping would cut shapes out and change the true class of the others).
    voc: "train" reads cfg.train_split ("train" | "trainaug"), "val" cfg.val_split;
    augmentation is random scale in scale_range, crop_size crop and flip; without
    it, whole images are returned.
    """
    from .transforms import SegTransform, eval_transform, train_transform

    dataset = _check_dataset(cfg)
    if split not in ("train", "val"):
        raise UserError(f"split must be 'train' or 'val', got {split!r}")
    if dataset == "synthetic":
        from .synthetic import SyntheticShapes

        return SyntheticShapes(
            split,
            size=cfg.train_size if split == "train" else cfg.val_size,
            image_size=cfg.image_size,
            data_seed=cfg.data_seed,
            kind_cue=cfg.kind_cue,
            shape_size=cfg.shape_size,
            transform=SegTransform(flip=True) if train else eval_transform(),
        )

    from .voc import VOCSegmentation

    if cfg.root is None:
        raise UserError(
            "data.root is not set: point it at the folder holding VOCdevkit/ "
            "(`python -m attnbench data voc --root DIR` prepares one)"
        )
    voc_split = cfg.train_split if split == "train" else cfg.val_split
    if split == "train" and voc_split not in ("train", "trainaug"):
        raise UserError(f"data.train_split must be 'train' or 'trainaug', got {voc_split!r}")
    transform = (
        train_transform(cfg.crop_size, tuple(cfg.scale_range)) if train else eval_transform()
    )
    return VOCSegmentation(cfg.root, voc_split, transform)


__all__ = ["DATASETS", "DatasetInfo", "build_dataset", "dataset_info"]
