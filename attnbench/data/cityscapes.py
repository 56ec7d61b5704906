"""Cityscapes, fine annotations: the 19 evaluation classes of the benchmark.

Layout, as the two official archives extract into DIR:

    DIR/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The labels are read as `labelIds` (the 34 ids of the annotation tool, stored as an
8-bit grey PNG) and mapped here to the 19 train ids of the benchmark; every other id
(void, the classes not evaluated, the licence plate) becomes 255 and is ignored. No
preprocessing step (cityscapesscripts' createTrainIdLabelImgs) is needed.

The archives sit behind a login at cityscapes-dataset.com, so the suite never
downloads them: `python -m attnbench data cityscapes --root DIR` checks the layout and
says what to put where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import (
    LabelledImages,
    check_split,
    labelled_pairs,
    read_index_png,
    ready_line,
)
from .transforms import IGNORE_INDEX

# (labelId, name) of the 19 evaluated classes, in train-id order (cityscapesscripts labels.py).
TRAIN_CLASSES = (
    (7, "road"),
    (8, "sidewalk"),
    (11, "building"),
    (12, "wall"),
    (13, "fence"),
    (17, "pole"),
    (19, "traffic light"),
    (20, "traffic sign"),
    (21, "vegetation"),
    (22, "terrain"),
    (23, "sky"),
    (24, "person"),
    (25, "rider"),
    (26, "car"),
    (27, "truck"),
    (28, "bus"),
    (31, "train"),
    (32, "motorcycle"),
    (33, "bicycle"),
)
CLASS_NAMES = tuple(name for _, name in TRAIN_CLASSES)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = ("train", "val")
OFFICIAL_COUNTS = {"train": 2975, "val": 500}
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
DOWNLOAD_PAGE = "https://www.cityscapes-dataset.com/downloads/"
ARCHIVES = (
    ("leftImg8bit_trainvaltest.zip", "leftImg8bit/"),
    ("gtFine_trainvaltest.zip", "gtFine/"),
)
PREPARE_COMMAND = "python -m attnbench data cityscapes --root DIR"


def layout_help(root: str | Path) -> str:
    """One line: where each official archive goes and what it must yield."""
    archives = " and ".join(f"{name} (gives {folder})" for name, folder in ARCHIVES)
    return (
        f"expected {root}/leftImg8bit/{{train,val}}/<city>/*{IMAGE_SUFFIX} and "
        f"{root}/gtFine/{{train,val}}/<city>/*{LABEL_SUFFIX}; Cityscapes needs a login, so "
        f"download {archives} from {DOWNLOAD_PAGE} into {root}; "
        f"`{PREPARE_COMMAND.replace('DIR', str(root))}` unzips them there and checks the layout"
    )


def label_to_train_lut() -> np.ndarray:
    """(256,) uint8: labelId -> train id, 255 for every id that is not evaluated."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for train_id, (label_id, _) in enumerate(TRAIN_CLASSES):
        lut[label_id] = train_id
    return lut


LABEL_TO_TRAIN = label_to_train_lut()


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map an (H, W) uint8 labelIds map to train ids (0..18, 255 elsewhere)."""
    return LABEL_TO_TRAIN[label_ids]


def label_path(root: Path, image: Path, split: str) -> Path:
    city = image.parent.name
    stem = image.name[: -len(IMAGE_SUFFIX)]
    return root / "gtFine" / split / city / f"{stem}{LABEL_SUFFIX}"


def read_label(path: Path, layout: str) -> np.ndarray:
    """(H, W) uint8 class ids of a labelIds PNG as train ids: 0..18 and 255."""
    return to_train_ids(read_index_png(path, layout))


def list_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of a split, sorted; stops at an empty split or a missing label."""
    check_split("Cityscapes", split, SPLITS)
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise UserError(f"no Cityscapes images: {image_dir} is missing; {layout_help(root)}")
    return labelled_pairs(
        sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")),
        lambda image: label_path(root, image, split),
        "label",
        f"no *{IMAGE_SUFFIX} files under {image_dir}/<city>/",
        layout_help(root),
    )


class CityscapesSegmentation(
    LabelledImages,
    class_names=CLASS_NAMES,
    pairs=list_pairs,
    layout=layout_help,
    read_label=read_label,
):
    """Cityscapes images and 19-class train-id labels; items are `transform(image, label)`."""


def unzip_present_archives(root: Path) -> None:
    """Unzip each official archive found in root whose folder is not there yet."""
    from .download import safe_extract

    for name, folder in ARCHIVES:
        if (root / name).is_file() and not (root / folder).is_dir():
            print(f"extracting {root / name}")
            safe_extract(root / name, root)


def prepare(root: str, *, download: bool, base_urls: list[str] | None, sbd: bool) -> None:
    """The `data cityscapes` command: Cityscapes needs a login, so it only unzips the
    archives found under root and checks the layout (the options do not apply)."""
    check_cityscapes(root)


def check_cityscapes(root: str | Path) -> dict[str, int]:
    """Check the layout under root (unzipping archives put there by hand); returns counts."""
    root = Path(root).expanduser()
    unzip_present_archives(root)
    counts = {split: len(list_pairs(root, split)) for split in SPLITS}
    print(ready_line("Cityscapes", root, counts, OFFICIAL_COUNTS))
    return counts
