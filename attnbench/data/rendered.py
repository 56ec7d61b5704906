"""Generated images drawn once per process: the render cache, and the data sets kept in it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class RenderCache:
    """Rendered items kept for the life of the process, up to `max_bytes`.

    An experiment trains every head, seed after seed, on the same images, and at the
    quick experiment's size rendering an image costs about a sixth of its training
    step. Items past the bound are simply rendered again: the pixels are the same
    either way, so the cache changes speed and nothing else. A DataLoader worker
    holds its own copy.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, key: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._items.get(key)

    def put(self, key: tuple, item: tuple[torch.Tensor, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in item)
        if self.bytes + size <= self.max_bytes:
            self._items[key] = item
            self.bytes += size

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


# 1 GiB holds about 19,000 images of 64 px (about 53 kB each: float32 RGB, uint8 label).
_RENDERED = RenderCache(1 << 30)


class RenderedImages(Dataset):
    """A data set whose item i is drawn by `sample(i)` and kept in the render cache.

    A subclass sets `size`, `split`, `transform` and `_render_key` (everything that
    decides item i's pixels) and defines `sample` and `render_label`. Items are
    `transform(image, label)` with image float32 (3, H, W) in [0, 1] and label int64
    (H, W); without a transform these raw tensors are returned.
    """

    size: int
    split: str
    transform: Callable[[torch.Tensor, torch.Tensor], tuple] | None
    _render_key: tuple

    @property
    def render_label(self) -> str:
        """What the progress bar of render_all says."""
        raise NotImplementedError

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """float32 (3, H, W) image in [0, 1], uint8 (H, W) label, and what was drawn."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        image, label = self._rendered(index)
        # Copies, so that no transform can write into the cached item.
        img = image.clone()  # (3, H, W)
        lab = label.long()  # (H, W)
        return self.transform(img, lab) if self.transform is not None else (img, lab)

    def raw_item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item `index` before the transform: image (3, H, W) in [0, 1], label (H, W).
        Shared with the render cache: read it, never write into it."""
        return self._rendered(index)

    def _rendered(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self._render_key, index)
        cached = _RENDERED.get(key)
        if cached is None:
            image, label, _ = self.sample(index)
            cached = (torch.from_numpy(image), torch.from_numpy(label))
            _RENDERED.put(key, cached)
        return cached

    def render_all(self, show: bool = True) -> int:
        """Render every item into the process cache, as many as fit; returns how many did.

        Done before training, so that a run's images/s measures training and not the
        drawing of the images, and the first head is not charged for all of them.
        DataLoader workers forked afterwards start with the cache filled.
        """
        from tqdm import tqdm

        cached = 0
        items = tqdm(range(self.size), desc=self.render_label, disable=None if show else True)
        for index in items:
            self._rendered(index)
            if _RENDERED.get((self._render_key, index)) is None:
                break  # the cache is full: the rest are drawn when asked for
            cached += 1
        items.close()
        return cached


def render_into_memory(*datasets: Any, show: bool) -> None:
    """Draw every generated data set among `datasets` into the cache (before the first
    run, see RenderedImages.render_all); a line each when `show`. Others are skipped."""
    for dataset in datasets:
        if hasattr(dataset, "render_all"):  # the generated data sets: embedded task, probes
            started = time.perf_counter()
            cached = dataset.render_all(show=show)
            if show:
                print(
                    f"{dataset.split} images: {cached} of {len(dataset)} drawn into memory "
                    f"in {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
