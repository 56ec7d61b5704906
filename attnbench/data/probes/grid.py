"""The grid probes' renderer (pairing.py, retrieval.py): items in independent cells.

The image is a grid of `grid` x `grid` cells. Each cell holds at most one item (a shape,
or in `retrieval` the marker) drawn independently of every other cell, inside the
cell shrunk by `margin` (a fraction of the cell) on every side. Pixels of items in
different cells are therefore at least `2 * margin * cell` pixels apart (`gap_px`).
A network whose receptive field reaches less than `gap_px` from a pixel sees, around
any pixel of a shape, only that shape's own cell. The long-range half of the class
(below) depends only on the *other* cells, which are independent of the own cell,
so no such network can do better than guessing it: its expected IoU on the
long-range classes is that of a guess (base.local_chance_iou, 1/3: a shape labelled
with the right kind and a coin flip for the rest scores 1/3 per class).

Probes (the kind of every shape is local: its hue under kind_cue="colour", its outline
under kind_cue="shape"):

pairing    Capability: relating items by content and counting them (one vs two).
           Classes: background, then kind x {paired, alone}: a shape is "paired" when
           another cell holds a shape of the same kind. Cells are empty with probability
           `empty` and hold each kind with (1 - empty) / 3, so that with grid 2 a shape
           is alone with probability exactly 1/2. An attention softmax over same-kind
           positions averages one shape the same as two: it must use position or
           count to tell them apart.
retrieval  Capability: looking up a distant cue by content and broadcasting it.
           One random cell holds a marker, a black or a white disk (equally likely);
           the other cells hold a shape of a random kind or nothing. Classes:
           background, then kind x {black, white}: every shape takes the colour of
           the marker. The marker is locally unambiguous: no background, texture or
           shape comes near pure black or white (see MARKER_CONTRAST).

The background is a plain grey (level 0.35-0.65) with pixel noise: a probe measures
whether context is used, not robustness to clutter, and on a plain background the
first convolution already separates items from background, so the runs spend their
budget on the long-range part.

Generated per item from (data_seed, split, index); nothing is stored or downloaded.
Items are drawn on demand and kept in the process's render cache (data/synthetic.py)
like the embedded task's. Training augmentation is a horizontal flip: it maps the
grid onto itself and changes no class.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..rendered import RenderedImages
from ..synthetic import (
    _BOUND,
    KIND_COLOUR_JITTER,
    KIND_COLOURS,
    KINDS,
    MIN_COLOUR_CONTRAST,
    SPLIT_STREAMS,
    Shape,
    _inside,
    kind_class,
)

# The long-range bit of each grid probe, in class order: a class is kind x bit.
BITS = {"pairing": ("paired", "alone"), "retrieval": ("black", "white")}
PROBES = tuple(BITS)
CLASS_NAMES = {
    probe: ("background", *(f"{k}_{b}" for k in KINDS for b in bits))
    for probe, bits in BITS.items()
}
# Every class but background: its long-range half can only be read from other cells.
LONG_RANGE_CLASSES = tuple(range(1, 1 + 2 * len(KINDS)))
MARKER_COLOURS = np.array([(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)])  # black, white
MARKER_CONTRAST = 0.5  # minimum RGB distance of the background and the shapes to a marker
MARKER_RADIUS = 0.6  # of the half-width of the usable part of a cell


def alone_balancing_empty(grid: int) -> float:
    """P(cell empty) for which a shape is alone with probability 1/2 (pairing probe)."""
    # A shape is alone when none of the other g^2 - 1 cells holds its kind, each with
    # probability q = (1 - empty) / 3: (1 - q)^(g^2 - 1) = 1/2.
    q = 1 - 0.5 ** (1 / (grid * grid - 1))
    return max(0.0, 1 - len(KINDS) * q)


class ProbeTask(RenderedImages):
    """One context probe: `size` images of `image_size` pixels, items (image, label)."""

    long_range_classes = LONG_RANGE_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        probe: str = "pairing",
        size: int = 2048,
        image_size: int = 128,
        grid: int = 2,
        margin: float = 0.25,
        shape_size: tuple[float, float] = (0.85, 1.0),
        kind_cue: str = "colour",
        noise: float = 0.04,
        data_seed: int = 0,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None,
    ) -> None:
        if split not in SPLIT_STREAMS:
            raise ValueError(f"split must be one of {sorted(SPLIT_STREAMS)}, got {split!r}")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {', '.join(PROBES)}, got {probe!r}")
        if kind_cue not in ("shape", "colour"):
            raise ValueError(f"kind_cue must be 'shape' or 'colour', got {kind_cue!r}")
        if grid < 2 or not 0 <= margin < 0.5 or not 0 < shape_size[0] <= shape_size[1] <= 1:
            raise ValueError(
                f"need grid >= 2, 0 <= margin < 0.5, 0 < shape_size <= 1; "
                f"got {grid}, {margin}, {shape_size}"
            )
        self.split, self.probe, self.size = split, probe, size
        self.image_size, self.grid, self.margin = image_size, grid, margin
        self.shape_size, self.kind_cue, self.noise = tuple(shape_size), kind_cue, noise
        self.data_seed, self.transform = data_seed, transform
        self.class_names = CLASS_NAMES[probe]
        self.num_classes = len(self.class_names)
        self.empty = alone_balancing_empty(grid) if probe == "pairing" else 0.25
        coords = np.arange(image_size, dtype=np.float32) + 0.5  # pixel centres
        self._ys, self._xs = coords[:, None], coords[None, :]
        self._render_key = (
            "probe", probe, split, image_size, grid, margin, self.shape_size, kind_cue,
            noise, data_seed,
        )  # fmt: skip

    @property
    def cell_px(self) -> float:
        return self.image_size / self.grid

    @property
    def gap_px(self) -> float:
        """The least distance between pixels of items in different cells."""
        return 2 * self.margin * self.cell_px

    @property
    def render_label(self) -> str:
        return f"rendering {self.probe} {self.split}"

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
        """float32 (3, H, W) image in [0, 1], uint8 (H, W) label, and the items drawn.

        The marker of `retrieval` is the item of kind -1 (colour black or white).
        """
        rng = np.random.default_rng([self.data_seed, SPLIT_STREAMS[self.split], index, 7])
        background = _background_colour(rng, self.kind_cue)
        items = self._layout(rng, background)
        shape = (3, self.image_size, self.image_size)
        image = np.broadcast_to(background.astype(np.float32)[:, None, None], shape).copy()
        label = np.zeros((self.image_size, self.image_size), dtype=np.uint8)
        for item in items:
            self._paint(image, label, item)
        noise = rng.random(size=image.shape, dtype=np.float32)
        image += np.float32(2 * math.sqrt(3) * self.noise) * (noise - np.float32(0.5))
        np.clip(image, 0.0, 1.0, out=image)
        return image, label, items

    def _layout(self, rng: np.random.Generator, background: np.ndarray) -> list[Shape]:
        cells = self.grid * self.grid
        if self.probe == "retrieval":
            marker_cell, marker = int(rng.integers(cells)), int(rng.integers(2))
        else:
            marker_cell, marker = -1, -1
        items = []
        for cell in range(cells):
            if cell == marker_cell:
                items.append(self._place(rng, cell, -1, marker, background))
            elif rng.random() >= self.empty:
                items.append(self._place(rng, cell, int(rng.integers(len(KINDS))), -1, background))
        kinds = [item.kind for item in items]
        for i, item in enumerate(items):
            if item.kind < 0:
                continue
            # retrieval: the marker's colour; pairing: whether the kind is alone.
            second = marker if self.probe == "retrieval" else int(kinds.count(item.kind) == 1)
            items[i] = dataclasses.replace(item, label=kind_class(item.kind, second))
        return items

    def _place(
        self, rng: np.random.Generator, cell: int, kind: int, marker: int, background: np.ndarray
    ) -> Shape:
        half = self.cell_px * (0.5 - self.margin)  # half-width of the usable square
        if kind < 0:
            radius = bound = MARKER_RADIUS * half
            colour = MARKER_COLOURS[marker]
        else:
            # Each kind's outline fills a share of the usable square: areas differ by
            # kind, which is local anyway, and say nothing about the other cells.
            radius = rng.uniform(*self.shape_size) * half / _BOUND[kind]
            bound, colour = radius * _BOUND[kind], self._shape_colour(rng, kind, background)
        row, col = divmod(cell, self.grid)
        slack = half - bound  # how far the centre may move and keep the item inside
        cy = (row + 0.5) * self.cell_px + rng.uniform(-slack, slack)
        cx = (col + 0.5) * self.cell_px + rng.uniform(-slack, slack)
        angle = float(rng.uniform(0, 2 * math.pi))
        # Label 0 for now: it stays so under the marker (background); _layout sets a shape's.
        return Shape(kind, 0, cy, cx, radius, angle, tuple(float(v) for v in colour))

    def _shape_colour(self, rng: np.random.Generator, kind: int, background: np.ndarray):
        for _ in range(100):
            if self.kind_cue == "colour":
                jitter = KIND_COLOUR_JITTER * rng.uniform(-1, 1, 3)
                colour = np.clip(KIND_COLOURS[kind] + jitter, 0, 1)
            else:
                colour = rng.uniform(0, 1, 3)
            to_markers = np.linalg.norm(colour - MARKER_COLOURS, axis=1).min()
            if (
                to_markers >= MARKER_CONTRAST
                and np.linalg.norm(colour - background) >= MIN_COLOUR_CONTRAST
            ):
                return colour
        raise RuntimeError("no shape colour found far enough from the markers and background")

    def item_mask(self, item: Shape) -> np.ndarray:
        """Boolean (H, W) mask of the pixels `item` covers."""
        mask = np.zeros((self.image_size, self.image_size), dtype=bool)
        s, b = self.image_size, item.bound + 1
        y0, y1 = max(0, int(item.cy - b)), min(s, int(item.cy + b) + 1)
        x0, x1 = max(0, int(item.cx - b)), min(s, int(item.cx + b) + 1)
        mask[y0:y1, x0:x1] = _inside(item, self._ys[y0:y1] - item.cy, self._xs[:, x0:x1] - item.cx)
        return mask

    def _paint(self, image: np.ndarray, label: np.ndarray, item: Shape) -> None:
        mask = self.item_mask(item)
        image[:, mask] = np.asarray(item.colour, np.float32)[:, None]
        label[mask] = item.label


def _background_colour(rng: np.random.Generator, kind_cue: str) -> np.ndarray:
    """A plain grey, level 0.35-0.65: at least 0.6 from both markers and 0.43 from every
    kind's hue with its jitter, so every item stands out from it by its colour alone."""
    return np.full(3, rng.uniform(0.35, 0.65))


def grid_builder(probe: str) -> Callable[[Any, str, int, Any], ProbeTask]:
    """The registry's `build` of a grid probe: its task from the data config's grid keys."""

    def build(data: Any, split: str, size: int, transform: Any) -> ProbeTask:
        return ProbeTask(
            split,
            probe=probe,
            size=size,
            image_size=data.image_size,
            grid=data.grid,
            margin=data.margin,
            kind_cue=data.kind_cue,
            data_seed=data.data_seed,
            transform=transform,
        )

    return build
