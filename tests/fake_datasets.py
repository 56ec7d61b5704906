"""Tiny Cityscapes and ADE20K trees in the official layouts, for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 40  # small, and wider than high like the real images

CITIES = {"train": ["aachen", "bremen"], "val": ["frankfurt"]}
CITY_FRAMES = 2  # per city
ADE_COUNTS = {"training": 3, "validation": 2}


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def cityscapes_label_ids(seed: int) -> np.ndarray:
    """(H, W) uint8 labelIds: road, car, sky, void (0), ground (6, not evaluated), a plate."""
    label = np.full((H, W), 7, np.uint8)  # road
    label[: H // 3] = 23  # sky
    label[H // 3 : H // 2, 4 + seed % 7 : 20] = 26  # car
    label[-3:, :5] = 0  # unlabeled
    label[-3:, 5:9] = 6  # ground: annotated but not one of the 19
    label[-1, -4:] = 255  # the licence plate's id -1, as 8 bits
    return label


def make_cityscapes(root: Path) -> Path:
    """root/leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_labelIds.png."""
    seed = 0
    for split, cities in CITIES.items():
        for city in cities:
            images = root / "leftImg8bit" / split / city
            labels = root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            for frame in range(CITY_FRAMES):
                stem = f"{city}_{seed:06d}_{frame:06d}"
                Image.fromarray(_rgb(seed)).save(images / f"{stem}_leftImg8bit.png")
                ids = cityscapes_label_ids(seed)
                Image.fromarray(ids, mode="L").save(labels / f"{stem}_gtFine_labelIds.png")
                # The other files of gtFine, which the reader must leave alone.
                instances = labels / f"{stem}_gtFine_instanceIds.png"
                Image.fromarray(ids * 0 + 1, mode="L").save(instances)
                seed += 1
    return root


def ade_label(seed: int) -> np.ndarray:
    """(H, W) uint8 ADE ids: 0 (other) in a band, classes 1 (wall), 150 (flag) and one by seed."""
    label = np.full((H, W), 1, np.uint8)
    label[:4] = 0
    label[10:16, 5:15] = 2 + seed % 148
    label[-2:, -6:] = 150
    return label


def make_ade(root: Path) -> Path:
    """root/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*; returns root."""
    ade = root / "ADEChallengeData2016"
    seed = 0
    for folder, count in ADE_COUNTS.items():
        (ade / "images" / folder).mkdir(parents=True, exist_ok=True)
        (ade / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        prefix = "ADE_train" if folder == "training" else "ADE_val"
        for i in range(count):
            stem = f"{prefix}_{i + 1:08d}"
            Image.fromarray(_rgb(100 + seed)).save(ade / "images" / folder / f"{stem}.jpg")
            Image.fromarray(ade_label(seed), mode="L").save(
                ade / "annotations" / folder / f"{stem}.png"
            )
            seed += 1
    (ade / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n")
    return root
