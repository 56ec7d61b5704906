"""Joint image/label transforms for segmentation, on torch tensors (no torchvision).

Every random draw uses torch's global generator, so a DataLoader's per-worker seeding
(base seed + worker id) makes an epoch's augmentation reproducible, and with
`num_workers=0` the training loop's `torch.manual_seed` does the same.

Images enter as float32 (3, H, W) in [0, 1] and labels as int64 (H, W); 255 = ignore.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255
CROP_TRIES = 10  # draws of a crop position under cat_max_ratio


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H, W, 3) image and integer (H, W) label -> float (3, H, W) in [0, 1], int64 (H, W)."""
    # Transposing in numpy: torch's strided copy of a (H, W, 3) view is far slower.
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
    lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64, copy=False))
    return img, lab


class SegTransform:
    """Normalise, then optionally resize, random-scale, pad, random-crop and flip.

    Normalising first means padding with 0 is padding with the image mean, and the
    bilinear resize commutes with the (affine) normalisation, so the order is harmless.

    crop_size: an int (square) or (height, width). scale_range: the random scale factor r.
    base_size: (long, short) edges, mmseg's `scale`: with it, r multiplies the factor that
    fits the image inside base_size keeping its aspect ratio (Cityscapes 2048x1024 at
    (2048, 1024): r itself; ADE20K: r times the factor giving a short side of 512); without
    it, r multiplies the image's own size. resize_to: (long, short), a fixed keep-ratio
    resize of the image alone (evaluation: the label keeps its size and is scored there).
    cat_max_ratio: below 1, a crop is drawn again (up to CROP_TRIES times in all) while one
    class covers that share of its labelled pixels or more, or it holds one class only
    (mmseg's RandomCrop); the last draw is kept when none passes.
    """

    def __init__(
        self,
        *,
        crop_size: int | tuple[int, int] | None = None,
        scale_range: tuple[float, float] | None = None,
        base_size: tuple[int, int] | None = None,
        resize_to: tuple[int, int] | None = None,
        flip: bool = False,
        cat_max_ratio: float = 1.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if crop_size is not None and min(crop_size) < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.base_size = base_size
        self.resize_to = resize_to
        self.flip = flip
        self.cat_max_ratio = cat_max_ratio
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.ignore_index = ignore_index

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = (image - self.mean) / self.std  # (3, H, W)
        if self.resize_to is not None:
            factor = fit_factor(label.shape, self.resize_to)
            image = resize_image(image, scaled(label.shape, factor), factor)
        if self.scale_range is not None:
            image, label = self._rescale(image, label)
        if self.crop_size is not None:
            image, label = self._pad_and_crop(image, label)
        if self.flip and torch.rand(()) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image.contiguous(), label.contiguous()

    def _rescale(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.scale_range  # type: ignore[misc]
        scale = low + (high - low) * float(torch.rand(()))
        if self.base_size is not None:
            scale *= fit_factor(label.shape, self.base_size)
        size = scaled(label.shape, scale)
        if size == tuple(label.shape):
            return image, label
        image = resize_image(image, size, scale)
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return image, label

    def _pad_and_crop(
        self, image: torch.Tensor, label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.crop_size is not None
        crop_h, crop_w = self.crop_size
        h, w = label.shape
        pad_h, pad_w = max(0, crop_h - h), max(0, crop_w - w)
        if pad_h or pad_w:
            # Pad bottom/right, as the reference recipe does; the label is ignored there.
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            label = F.pad(label, (0, pad_w, 0, pad_h), value=self.ignore_index)
            h, w = label.shape
        for _ in range(CROP_TRIES if self.cat_max_ratio < 1 else 1):
            top = int(torch.randint(0, h - crop_h + 1, ()))
            left = int(torch.randint(0, w - crop_w + 1, ()))
            crop = label[top : top + crop_h, left : left + crop_w]
            if self._mixed_enough(crop):
                break
        return image[:, top : top + crop_h, left : left + crop_w], crop

    def _mixed_enough(self, crop: torch.Tensor) -> bool:
        """More than one class, and none above cat_max_ratio of the labelled pixels."""
        counts = torch.bincount(crop[crop != self.ignore_index].flatten())
        counts = counts[counts > 0]
        return len(counts) > 1 and float(counts.max()) < self.cat_max_ratio * float(counts.sum())


def fit_factor(size: tuple[int, int] | torch.Size, bounds: tuple[int, int]) -> float:
    """The keep-ratio factor that fits (H, W) inside `bounds` = (long edge, short edge)."""
    long_edge, short_edge = max(bounds), min(bounds)
    return min(long_edge / max(size), short_edge / min(size))


def scaled(size: tuple[int, int] | torch.Size, factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def resize_image(image: torch.Tensor, size: tuple[int, int], factor: float) -> torch.Tensor:
    """Bilinear resize of a (3, H, W) image; antialiased when shrinking."""
    if tuple(image.shape[-2:]) == size:
        return image
    # antialias only matters when shrinking; it keeps thin structures from aliasing.
    return F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1
    )[0]


def eval_transform(resize_to: tuple[int, int] | None = None) -> SegTransform:
    """Evaluation: normalisation, and with resize_to a keep-ratio resize of the image only."""
    return SegTransform(resize_to=resize_to)
