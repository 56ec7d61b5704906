"""Data sets: the embedded synthetic task, Pascal VOC 2012, Cityscapes and ADE20K.

`build_dataset(cfg, split, train)` returns a torch Dataset of (image float32 (3, H, W)
normalised with the ImageNet statistics, label int64 (H, W), 255 = ignore);
`dataset_info(cfg)` gives the class count and names without touching any file;
`layout_hint(dataset, root)` says, in one line, what a data set's root must hold.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from torch.utils.data import Dataset

from ..errors import UserError


class DatasetSpec(NamedTuple):
    """One data set: adding a data set is one entry in SPECS (and its own module)."""

    title: str  # as written in messages
    module: str  # the module of attnbench.data that reads it (CLASS_NAMES, layout_help)
    reader: str | None = None  # its Dataset class (root, split, transform); None: generated
    # its `data` command: "module.function" under attnbench.data, taking
    # (root, *, download, base_urls, sbd); None: nothing to prepare
    prepare: str | None = None


# The data sets, named once: the config's data.dataset, the `data` command and the checks
# before a run all loop over this.
SPECS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", "synthetic"),
    "probe": DatasetSpec("probe", "probes"),
    "voc": DatasetSpec("VOC", "voc", "VOCSegmentation", "download.prepare"),
    "cityscapes": DatasetSpec(
        "Cityscapes", "cityscapes", "CityscapesSegmentation", "cityscapes.prepare"
    ),
    "ade20k": DatasetSpec("ADE20K", "ade20k", "ADE20KSegmentation", "ade20k.prepare"),
}
DATASETS = tuple(SPECS)
TITLES = {name: spec.title for name, spec in SPECS.items()}
PREPARABLE = tuple(name for name, spec in SPECS.items() if spec.prepare)


class DatasetInfo(NamedTuple):
    num_classes: int
    class_names: tuple[str, ...]


def _module(dataset: str) -> ModuleType:
    """The module of a data set (imported when first asked for): each has CLASS_NAMES,
    and those read from disk a layout_help(root)."""
    return import_module(f"{__name__}.{SPECS[dataset].module}")


def is_generated(dataset: str) -> bool:
    """True for a data set drawn on the fly (no files, no root)."""
    return SPECS[dataset].reader is None


def prepare(dataset: str, root: str, **options: Any) -> None:
    """The `data` command for one data set: download, lay out or check it under root."""
    module, function = (SPECS[dataset].prepare or "").rsplit(".", 1)
    getattr(import_module(f"{__name__}.{module}"), function)(root, **options)


def dataset_info(cfg: Any) -> DatasetInfo:
    """Number of classes and their names for cfg.dataset (a DataConfig)."""
    if cfg.dataset == "probe":
        from .probes import REGISTRY

        names = REGISTRY[cfg.probe].class_names  # each probe has its own classes
    else:
        names = _module(cfg.dataset).CLASS_NAMES
    return DatasetInfo(len(names), names)


def layout_hint(dataset: str, root: str) -> str:
    """What `root` must hold for `dataset`, and the command that prepares or checks it."""
    return _module(dataset).layout_help(root)


def missing_data(cfg: Any) -> str | None:
    """What is missing for cfg (a DataConfig) to be read, in one line; None when it is
    there (or generated). Lists the splits' files without reading any image."""
    dataset = cfg.dataset
    if is_generated(dataset):
        return None
    if not cfg.root:
        return f"data.root: the {dataset} dataset needs a root folder; " + layout_hint(
            dataset, "DIR"
        )
    if not Path(cfg.root).is_dir():
        hint = layout_hint(dataset, cfg.root)
        return f"data.root: no {TITLES[dataset]} data at {cfg.root!r}; {hint}"
    try:
        for split in dict.fromkeys((cfg.train_split, cfg.val_split)):
            _module(dataset).list_pairs(cfg.root, split)
    except UserError as err:
        return f"data.root: {err}"
    return None


def crop_hw(crop_size: int | tuple[int, ...]) -> tuple[int, int]:
    """data.crop_size as (height, width): one value is a square."""
    if isinstance(crop_size, int):
        return (crop_size, crop_size)
    return (crop_size[0], crop_size[-1])


def build_dataset(cfg: Any, split: str, train: bool) -> Dataset:
    """The `split` ("train" | "val") of cfg.dataset, augmented when `train`.

    probe: a context probe (data/probes/, its registry's `build`), sized and flipped like synthetic.
    synthetic: train_size / val_size images of image_size pixels, keyed by data_seed;
    augmentation is a horizontal flip only (crop_size and scale_range do not apply:
    cropping would cut shapes out and change the true class of the others).
    voc: "train" reads cfg.train_split ("train" | "trainaug"), "val" cfg.val_split.
    cityscapes, ade20k: the official train and val splits.
    Augmentation is random scale in scale_range (of base_size when set), crop_size crop
    and flip; without it, whole images are returned, resized to fit base_size when set.
    """
    from .transforms import SegTransform, eval_transform

    dataset = cfg.dataset
    if split not in ("train", "val"):
        raise UserError(f"split must be 'train' or 'val', got {split!r}")
    if dataset == "probe":
        from .probes import REGISTRY

        return REGISTRY[cfg.probe].build(
            cfg,
            split,
            cfg.train_size if split == "train" else cfg.val_size,
            SegTransform(flip=True) if train else eval_transform(),
        )
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
    if cfg.root is None:
        raise UserError(f"data.root is not set: {layout_hint(dataset, 'DIR')}")
    base = tuple(cfg.base_size) if cfg.base_size else None
    transform = (
        SegTransform(crop_size=crop_hw(cfg.crop_size), scale_range=tuple(cfg.scale_range),
                     base_size=base, flip=True, cat_max_ratio=cfg.cat_max_ratio)
        if train
        else eval_transform(base)
    )  # fmt: skip
    return _labelled_dataset(cfg, dataset, split, transform)


def _labelled_dataset(cfg: Any, dataset: str, split: str, transform: Any) -> Dataset:
    spec = SPECS[dataset]
    chosen = cfg.train_split if split == "train" else cfg.val_split
    module = _module(dataset)
    if chosen not in module.SPLITS:  # each reader's SPLITS: the names its splits take
        key = "data.train_split" if split == "train" else "data.val_split"
        splits = ", ".join(module.SPLITS)
        raise UserError(f"{key}: {dataset} has the splits {splits}, got {chosen!r}")
    reader = getattr(module, spec.reader or "")
    return reader(cfg.root, chosen, transform)


__all__ = [
    "DATASETS",
    "SPECS",
    "DatasetInfo",
    "build_dataset",
    "crop_hw",
    "dataset_info",
    "layout_hint",
    "missing_data",
]
