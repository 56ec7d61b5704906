"""Reading image and label files with one-line errors that name the file and the layout.

Every data set of the suite reads its files through these two functions, so a missing
or corrupt file stops a run with `UserError("missing label <path>; expected ...")`
instead of a PIL traceback from inside a DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import UserError
from .transforms import to_tensors


def read_rgb(path: Path, layout: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; `layout` says what was expected, for the error."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing image {path}; {layout}") from None
    except OSError as err:
        raise UserError(f"unreadable image {path} ({err}); {layout}") from None


def read_index_png(path: Path, layout: str) -> np.ndarray:
    """(H, W) uint8: the stored values of a one-channel (grey or palette) label PNG."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P"):
                raise UserError(
                    f"label {path} is a {image.mode} image, expected one channel of class ids "
                    f"(grey or palette PNG); {layout}"
                )
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing label {path}; {layout}") from None
    except OSError as err:
        raise UserError(f"unreadable label {path} ({err}); {layout}") from None


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: Path) -> None:
    if image.shape[:2] != label.shape:
        raise UserError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label is "
            f"{label.shape[1]}x{label.shape[0]}"
        )


def check_split(dataset: str, split: str, splits: Iterable[str]) -> None:
    if split not in splits:
        raise UserError(f"{dataset} split must be one of {', '.join(splits)}, got {split!r}")


def labelled_pairs(
    images: list[Path], label_of: Callable[[Path], Path], what: str, empty: str, layout: str
) -> list[tuple[Path, Path]]:
    """(image, label_of(image)) for every image, when there are images and every label file
    exists; else a UserError saying `empty`, or naming the first missing file as `what`
    (label, annotation), with the layout the data set expects."""
    if not images:
        raise UserError(f"{empty}; {layout}")
    pairs = [(image, label_of(image)) for image in images]
    for image, label in pairs:
        if not label.is_file():
            raise UserError(f"missing {what} {label} for {image.name}; {layout}")
    return pairs


class LabelledImages(Dataset):
    """One split of a data set stored as (image, label) file pairs.

    A subclass names, in its class statement, its class names and three functions of its
    module: `pairs(root, split)`, the split's (image, label) paths; `layout(root)`, one
    line saying what root must hold; `read_label(path, layout)`, a label file as (H, W)
    uint8 class ids 0..K-1 and 255. Items are `transform(image, label)`: float32
    (3, H, W) in [0, 1] and int64 (H, W).
    """

    class_names: tuple[str, ...]
    num_classes: int

    def __init_subclass__(
        cls,
        *,
        class_names: tuple[str, ...],
        pairs: Callable[[str | Path, str], list[tuple[Path, Path]]],
        layout: Callable[[str | Path], str],
        read_label: Callable[[Path, str], np.ndarray],
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.class_names, cls.num_classes = class_names, len(class_names)
        cls._pairs, cls._layout = staticmethod(pairs), staticmethod(layout)
        cls._read_label = staticmethod(read_label)

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None,
    ) -> None:
        self.pairs = self._pairs(root, split)
        self.layout = self._layout(root)
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        image = read_rgb(image_path, self.layout)
        label = self._read_label(label_path, self.layout)
        check_same_size(image, label, image_path)
        img, lab = to_tensors(image, label)
        return self.transform(img, lab) if self.transform is not None else (img, lab)


def ready_line(name: str, where: Path, counts: dict[str, int], official: dict[str, int]) -> str:
    """ "<name> ready in <where>: train N images, val M images", noting counts off the release's."""
    notes = [
        f"{split} {n} images"
        + ("" if n == official[split] else f" (the release has {official[split]})")
        for split, n in counts.items()
    ]
    return f"{name} ready in {where}: " + ", ".join(notes)
