"""Tiny Pascal VOC and SBD trees for the tests, SBD's .mat files written by scipy.io."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from attnbench.data.voc import save_label_png


def write_mat(path: Path, variables: dict, *, compress: bool = True) -> None:
    """A level-5 MAT-file with the given variables, by scipy's own writer."""
    scipy.io.savemat(path, variables, do_compression=compress)


def sbd_gt(segmentation: np.ndarray) -> dict:
    present = np.unique(segmentation[segmentation > 0]).astype(np.float64).reshape(-1, 1)
    boundaries = np.empty((2, 1), dtype=object)  # a cell of sparse edge maps, as SBD's
    for i in range(2):
        boundaries[i, 0] = scipy.sparse.csc_matrix(segmentation == i + 1)
    return {
        "Boundaries": boundaries,
        "Segmentation": segmentation.astype(np.uint8),
        "CategoriesPresent": present,
    }


H, W = 20, 24


def fake_label(seed: int) -> np.ndarray:
    label = np.zeros((H, W), np.uint8)
    label[4:16, 5 + seed % 5 : 18] = 1 + seed % 20
    label[3, 4:19] = 255  # VOC's ignored object borders
    return label


def _jpeg(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def make_voc(root: Path, train: list[str], val: list[str]) -> Path:
    """A tiny VOCdevkit/VOC2012 tree; returns the VOC2012 folder."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(train + val):
        _jpeg(voc / "JPEGImages" / f"{name}.jpg", i)
        save_label_png(fake_label(i), voc / "SegmentationClass" / f"{name}.png")
    sets = voc / "ImageSets" / "Segmentation"
    for split, ids in (("train", train), ("val", val), ("trainval", train + val)):
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in ids))
    return voc


def make_sbd(root: Path, train: list[str], val: list[str], jpeg_dir: Path | None = None) -> Path:
    """A tiny benchmark_RELEASE/dataset tree with generated cls/*.mat; returns dataset/."""
    sbd = root / "benchmark_RELEASE" / "dataset"
    (sbd / "img").mkdir(parents=True, exist_ok=True)
    (sbd / "cls").mkdir(exist_ok=True)
    for i, name in enumerate(train + val):
        _jpeg(sbd / "img" / f"{name}.jpg", 100 + i)
        seg = np.zeros((H, W), np.uint8)
        seg[2:12, 3:9] = 1 + (7 * i) % 20  # SBD labels: class ids, no 255
        write_mat(sbd / "cls" / f"{name}.mat", {"GTcls": sbd_gt(seg)}, compress=i % 2 == 0)
    (sbd / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (sbd / "val.txt").write_text("".join(f"{n}\n" for n in val))
    return sbd


VOC_TRAIN, VOC_VAL = ["2007_000032", "2007_000039"], ["2007_000033", "2007_000042"]


SBD_TRAIN, SBD_VAL = ["2007_000039", "2007_000033", "2008_000002"], ["2008_000003"]
