"""Tiny Pascal VOC and SBD trees for the tests, with SBD's .mat files written byte by byte."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from attnbench.data.voc import save_label_png

MI = {"i1": 1, "u1": 2, "i4": 5, "u4": 6, "f8": 9, "u2": 4}


MX = {"cell": 1, "struct": 2, "char": 4, "sparse": 5, "f8": 6, "u1": 9}


def _element(e: str, mi_type: int, data: bytes, small: bool = True) -> bytes:
    if small and len(data) <= 4:
        return struct.pack(e + "I", (len(data) << 16) | mi_type) + data.ljust(4, b"\0")
    return struct.pack(e + "II", mi_type, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(e: str, value, name: str = "") -> bytes:
    """A miMATRIX element for ndarray (u1/f8), dict (1x1 struct), list (cell), str, 'sparse'."""
    if isinstance(value, np.ndarray):
        cls, dims = MX[value.dtype.str[1:]], value.shape
        data = value.astype(e + value.dtype.str[1:]).tobytes(order="F")
        tail = _element(e, MI[value.dtype.str[1:]], data)
    elif isinstance(value, dict):
        cls, dims, width = MX["struct"], (1, 1), 32
        names = b"".join(k.encode().ljust(width, b"\0") for k in value)
        tail = _element(e, MI["i4"], struct.pack(e + "i", width)) + _element(e, MI["i1"], names)
        tail += b"".join(_matrix(e, v) for v in value.values())
    elif isinstance(value, list):
        cls, dims = MX["cell"], (len(value), 1)
        tail = b"".join(_matrix(e, v) for v in value)
    elif value == "sparse":  # a 3x3 logical sparse matrix with one entry: only skipped
        cls, dims = MX["sparse"] | 0x0200, (3, 3)
        tail = _element(e, MI["i4"], struct.pack(e + "i", 1))
        tail += _element(e, MI["i4"], struct.pack(e + "4i", 0, 1, 1, 1))
        tail += _element(e, MI["u1"], b"\x01")
    else:
        cls, dims = MX["char"], (1, len(value))
        tail = _element(e, MI["u2"], np.array([ord(c) for c in value], e + "u2").tobytes())
    body = _element(e, MI["u4"], struct.pack(e + "II", cls, 0))
    body += _element(e, MI["i4"], struct.pack(e + f"{len(dims)}i", *dims))
    body += _element(e, MI["i1"], name.encode())
    return _element(e, 14, body + tail, small=False)


def write_mat(path: Path, variables: dict, *, compress: bool = True, endian: str = "<") -> None:
    """A level-5 MAT-file with the given variables, written byte by byte (no scipy)."""
    header = b"MATLAB 5.0 MAT-file, written by attnbench tests".ljust(116, b" ")
    header += b"\0" * 8 + struct.pack(endian + "H", 0x0100) + (b"IM" if endian == "<" else b"MI")
    out = header
    for name, value in variables.items():
        element = _matrix(endian, value, name)
        if compress:
            packed = zlib.compress(element)
            element = struct.pack(endian + "II", 15, len(packed)) + packed
        out += element
    path.write_bytes(out)


def sbd_gt(segmentation: np.ndarray) -> dict:
    present = np.unique(segmentation[segmentation > 0]).astype(np.float64).reshape(-1, 1)
    return {
        "Boundaries": ["sparse", "sparse"],
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
