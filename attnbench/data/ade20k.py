"""ADE20K as the SceneParsing benchmark (ADEChallengeData2016): 150 classes.

Layout, as the archive extracts into DIR (DIR may also be ADEChallengeData2016/ itself):

    DIR/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
    DIR/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png

Annotations are 8-bit grey PNGs: 0 = "other" (not one of the 150 classes), 1..150 the
classes. The benchmark ignores 0 ("reduce_zero_label"): 0 -> 255, k -> k - 1, so the
model predicts 150 classes, 0..149.
"""

from __future__ import annotations

from collections.abc import Sequence
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

# The 150 class names of objectInfo150 in label order (short forms, as mmsegmentation's
# ADE20KDataset names them).
CLASS_NAMES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = {"train": "training", "val": "validation"}
OFFICIAL_COUNTS = {"train": 20210, "val": 2000}
FOLDER = "ADEChallengeData2016"
ARCHIVE = "ADEChallengeData2016.zip"
BASE_URL = "http://data.csail.mit.edu/places/ADEchallenge"
# MD5 of the archive: paperswithcode/torchbench, torchbench/datasets/ade20k.py
# (commit c1b10835c45b1b6c83f4f5ea7711314ab567211c). Its size, 967382037 bytes, is from
# tensorflow/datasets, tensorflow_datasets/url_checksums/ade20k.txt (commit 6f96ef33).
MD5 = "7328b3957e407ddae1d3cbf487f149ef"
SIZE = 967_382_037
PREPARE_COMMAND = "python -m attnbench data ade20k --root DIR"


def layout_help(root: str | Path) -> str:
    """One line: what the archive is, where it comes from and where its contents go."""
    return (
        f"expected {root}/{FOLDER}/images/{{training,validation}}/*.jpg and "
        f"{root}/{FOLDER}/annotations/{{training,validation}}/*.png, which {ARCHIVE} "
        f"(md5 {MD5}, {SIZE} bytes, from {BASE_URL}/{ARCHIVE}) gives when unzipped in {root}; "
        f"`{PREPARE_COMMAND.replace('DIR', str(root))}` downloads and unzips it"
    )


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 ADE class ids 0..150 -> 0..149, with 0 ("other") and 255 as 255."""
    # uint8 wrap-around sends 0 to 255; a stored 255 (none in the release) would become
    # 254, so it is restored explicitly.
    reduced = label.astype(np.uint8) - np.uint8(1)
    reduced[label == IGNORE_INDEX] = IGNORE_INDEX
    return reduced


def find_ade_dir(root: str | Path) -> Path | None:
    """The ADEChallengeData2016 folder: root/ADEChallengeData2016 or root itself."""
    root = Path(root)
    for candidate in (root / FOLDER, root):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    return None


def read_label(path: Path, layout: str) -> np.ndarray:
    """(H, W) uint8 class ids of a annotation PNG: 0..149 and 255."""
    return reduce_zero_label(read_index_png(path, layout))


def list_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of a split, sorted; stops at the first missing annotation."""
    check_split("ADE20K", split, SPLITS)
    ade = find_ade_dir(root)
    if ade is None:
        raise UserError(f"no ADE20K found under {root}; {layout_help(root)}")
    folder = SPLITS[split]
    images = sorted((ade / "images" / folder).glob("*.jpg"))
    return labelled_pairs(
        images,
        lambda image: ade / "annotations" / folder / f"{image.stem}.png",
        "annotation",
        f"no *.jpg files in {ade / 'images' / folder}",
        layout_help(root),
    )


class ADE20KSegmentation(
    LabelledImages,
    class_names=CLASS_NAMES,
    pairs=list_pairs,
    layout=layout_help,
    read_label=read_label,
):
    """ADE20K images and 150-class labels (0 ignored); items are `transform(image, label)`."""


def summarise(root: Path) -> dict[str, int]:
    """{split: image count} after checking every pair; prints one line."""
    counts = {split: len(list_pairs(root, split)) for split in SPLITS}
    print(ready_line("ADE20K", find_ade_dir(root), counts, OFFICIAL_COUNTS))
    return counts


def manual_layout(root: Path, reason: str) -> str:
    """One line: why the data is not ready, and what to put where by hand."""
    return (
        f"{reason}. Without network access, put {ARCHIVE} or its extracted {FOLDER}/ in {root} "
        f"by hand and rerun `{PREPARE_COMMAND.replace('DIR', str(root))} --no-download`; "
        + layout_help(root)
    )


def prepare(root: str, *, download: bool, base_urls: list[str] | None, sbd: bool) -> None:
    """The `data ade20k` command: download (unless told not to) and unzip ADE20K."""
    prepare_ade20k(root, download=download, base_urls=base_urls)


def prepare_ade20k(
    root: str | Path,
    *,
    download: bool = True,
    base_urls: Sequence[str] | str | None = None,
    md5: str = MD5,
    progress: bool = True,
) -> dict[str, int]:
    """Lay out ADEChallengeData2016 under root, downloading and unzipping it when needed.

    base_urls: mirrors holding ADEChallengeData2016.zip, tried in order (default: the MIT
    site). md5: the archive's checksum (tests pass their small stand-in's).
    """
    from .download import Archive, needs_extraction, obtain

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(base_urls, str):
        base_urls = [base_urls]
    archive = Archive(ARCHIVE, BASE_URL, md5, FOLDER)
    if needs_extraction(root, archive, find_ade_dir(root) is not None):
        obtain(
            root,
            archive,
            md5,
            download=download,
            base_urls=base_urls,
            progress=progress,
            manual=lambda reason: manual_layout(root, reason),
        )
    return summarise(root)
