"""Pascal VOC 2012 segmentation, and the SBD "trainaug" training set built from it.

Expected layout (`root` may be the folder holding VOCdevkit/, or VOC2012/ itself):

    root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
                          SegmentationClass/<id>.png      palette PNG, 255 on borders
                          SegmentationClassAug/<id>.png   built from SBD (trainaug)
                          ImageSets/Segmentation/{train,val,trainval,trainaug}.txt

Trainaug = SBD train + SBD val + VOC train, minus VOC val (10582 images on the real
data). Its labels are SBD's `cls/<id>.mat` (struct GTcls, field Segmentation)
written once as palette PNGs; images that VOC itself annotates keep VOC's label,
whose 255 borders are what the benchmark was built on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .images import LabelledImages, check_split
from .transforms import IGNORE_INDEX

CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS = ("train", "val", "trainval", "trainaug")
PREPARE_COMMAND = "python -m attnbench data voc --root DIR"
LAYOUT = (
    "expected DIR/VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, "
    "ImageSets/Segmentation/{train,val}.txt} (trainaug adds SegmentationClassAug/ and "
    f"ImageSets/Segmentation/trainaug.txt); `{PREPARE_COMMAND}` downloads and builds it"
)


def layout_help(root: str | Path) -> str:
    """One line: what root must hold, and the command that builds it."""
    return LAYOUT.replace("DIR", str(root))


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: VOC's colour map, class id bits spread over the RGB high bits."""
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for shift in range(8):  # bit 3k+c of the id sets bit 7-k of channel c
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * shift + channel)) & 1) << (7 - shift)
    return palette.astype(np.uint8)


def save_label_png(label: np.ndarray, path: Path) -> None:
    """Write an (H, W) uint8 class-id map as a VOC palette PNG."""
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette().ravel().tolist())
    image.save(path, format="PNG")


def find_voc_dir(root: str | Path) -> Path | None:
    """The VOC2012 folder under root (root/VOCdevkit/VOC2012, root/VOC2012 or root)."""
    root = Path(root)
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets").is_dir():
            return candidate
    return None


def read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"missing list file {path}; {LAYOUT}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_label(path: Path, layout: str = LAYOUT) -> np.ndarray:
    """(H, W) uint8 class ids from a palette, grey or VOC-coloured RGB PNG."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"missing label {path}; {layout}") from None
    except OSError as err:
        raise UserError(f"unreadable label {path} ({err}); {layout}") from None
    # An RGB rendering of the palette: map colours back, unknown ones to ignore.
    palette = voc_palette().astype(np.int64)
    keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    lookup = dict(zip(keys[:NUM_CLASSES].tolist(), range(NUM_CLASSES), strict=True))
    lookup[int(keys[IGNORE_INDEX])] = IGNORE_INDEX
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    values, inverse = np.unique(flat, return_inverse=True)
    mapped = np.array([lookup.get(int(v), IGNORE_INDEX) for v in values], dtype=np.uint8)
    return mapped[inverse].reshape(flat.shape)


def list_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of the images the split's list file names, in its order."""
    check_split("VOC", split, SPLITS)
    voc = find_voc_dir(root)
    if voc is None:
        raise UserError(f"no Pascal VOC 2012 found under {root}; {LAYOUT}")
    list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if split == "trainaug" and not list_file.is_file():
        raise UserError(f"missing {list_file}: trainaug is built from SBD by `{PREPARE_COMMAND}`")
    ids = read_ids(list_file)
    if not ids:
        raise UserError(f"list file {list_file} names no images")
    labels = voc / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
    return [(voc / "JPEGImages" / f"{name}.jpg", labels / f"{name}.png") for name in ids]


class VOCSegmentation(
    LabelledImages,
    class_names=CLASS_NAMES,
    pairs=list_pairs,
    layout=lambda _root: LAYOUT,
    read_label=read_label,
):
    """VOC 2012 images and labels of one split; items are `transform(image, label)`."""


def build_trainaug(voc_dir: Path, sbd_dir: Path, *, progress: bool = True) -> int:
    """Write SegmentationClassAug/ and trainaug.txt from SBD; returns the image count.

    sbd_dir is benchmark_RELEASE/dataset (img/, cls/, train.txt, val.txt). Labels
    already written are kept, so an interrupted run resumes; the list is written
    last, so its presence means the set is complete.
    """
    from tqdm import tqdm

    seg_sets = voc_dir / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_ids(seg_sets / "train.txt"), read_ids(seg_sets / "val.txt")
    sbd_ids = read_ids(sbd_dir / "train.txt") + read_ids(sbd_dir / "val.txt")
    voc_labelled = set(voc_train)
    ids = sorted(set(sbd_ids + voc_train) - set(voc_val))
    out_dir = voc_dir / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    for name in tqdm(ids, desc="trainaug labels", unit="img", disable=not progress):
        target = out_dir / f"{name}.png"
        if not target.exists():
            tmp = target.with_name(f".{name}.png.tmp")
            if name in voc_labelled:
                source = voc_dir / "SegmentationClass" / f"{name}.png"
                if not source.is_file():
                    raise UserError(f"missing label {source}; {LAYOUT}")
                shutil.copyfile(source, tmp)
            else:
                save_label_png(read_sbd_label(sbd_dir / "cls" / f"{name}.mat"), tmp)
            tmp.replace(target)
        # SBD's images are VOC 2011 ones, so JPEGImages should hold them all; a trimmed
        # copy of VOC may not, and SBD ships the same JPEGs.
        jpeg = voc_dir / "JPEGImages" / f"{name}.jpg"
        if not jpeg.exists():
            source = sbd_dir / "img" / f"{name}.jpg"
            if not source.exists():
                raise UserError(f"missing image {name}.jpg in {jpeg.parent} and {source.parent}")
            partial = jpeg.with_name(f".{jpeg.name}.tmp")  # a killed copy leaves no half image
            shutil.copyfile(source, partial)
            partial.replace(jpeg)
    tmp_list = seg_sets / ".trainaug.txt.tmp"
    tmp_list.write_text("".join(f"{name}\n" for name in ids))
    tmp_list.replace(seg_sets / "trainaug.txt")
    return len(ids)


def read_sbd_label(path: Path) -> np.ndarray:
    """(H, W) uint8 class ids from an SBD cls/*.mat file."""
    if not path.is_file():
        raise UserError(f"missing SBD label {path}; expected benchmark_RELEASE/dataset/cls/*.mat")
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        gt = loadmat(path, simplify_cells=True)["GTcls"]
        segmentation = gt["Segmentation"]
    except (MatReadError, ValueError, NotImplementedError, KeyError, TypeError) as err:
        raise UserError(f"unreadable SBD label {path} (no GTcls.Segmentation: {err})") from None
    return np.asarray(segmentation, dtype=np.uint8)
