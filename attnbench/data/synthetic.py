"""An embedded segmentation task whose labels need context from far away in the image.

Each image holds 2-4 filled shapes of three kinds (disk, square, triangle) on a
textured, noisy background. A shape's class says its kind AND whether another shape
of the same kind is present anywhere else in the image:

    0 background
    1 disk_paired      2 disk_alone
    3 square_paired    4 square_alone
    5 triangle_paired  6 triangle_alone

Why it probes context: the kind can be read locally, but "paired" vs "alone" cannot.
Same-kind shapes are placed at least `pair_min_distance * image_size` apart, so the
evidence is never inside a small neighbourhood, and "alone" can only be known by
looking at the whole image and finding nothing. Everything that could give the answer
away locally is drawn independently of the pairing: colours (uniform RGB, only kept
away from the background colour), sizes (the same range for every kind, given as an
equal-area radius so area does not tell the kind either), rotations, and positions
(an alone shape is placed exactly like one member of a pair, i.e. together with a
phantom partner that is then dropped, so pairs are not pushed towards the borders
more than singletons). Per-kind counts are drawn from {0, 1, 2} with odds chosen so
that half of all shapes are "alone" in expectation: a head without context can get
the kind right but is at chance on the pairing.

A dilated backbone can see the whole of a 64 px image, so part of the cue reaches even
the plain head; a larger image_size puts the partner further beyond a convolution's
reach. (How the default sizes were chosen: docs/findings.md.)

With kind_cue="colour" each kind also has its own jittered hue, so the kind is a
local, one-pixel fact and the pairing is the whole task: the quick experiment uses it
to stay within minutes on two CPU cores; kind_cue="shape" (the default) is the harder
task, where colour says nothing and the kind must be read from the outline.

Generation is per item, keyed by (data_seed, split, index): the same index always
gives the same image, so an epoch is reproducible and nothing is stored. Training
augmentation is a horizontal flip only: random scaling and cropping would cut shapes
off or out of the image and silently change the true class of the ones left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .rendered import RenderedImages
from .shape_counts import balanced_weights, count_probabilities, count_table

KINDS = ("disk", "square", "triangle")
CLASS_NAMES = (
    "background",
    "disk_paired",
    "disk_alone",
    "square_paired",
    "square_alone",
    "triangle_paired",
    "triangle_alone",
)
NUM_CLASSES = len(CLASS_NAMES)

# Knobs (all sizes are fractions of the image size, so the task scales with it).
SHAPES_PER_IMAGE = (2, 4)  # inclusive range of shapes per image
SHAPE_SIZE = (0.10, 0.16)  # equal-area radius range
PAIR_MIN_DISTANCE = 0.45  # minimum centre distance between same-kind shapes
# Relative odds of a kind appearing 0, 1 or 2 times, before the range check; None: the
# odds of 1 are solved for so that half of all shapes are "alone" in expectation.
KIND_COUNT_WEIGHTS: tuple[float, float, float] | None = None
NOISE = 0.06  # std of per-pixel (uniform) noise on [0, 1] intensities
MIN_COLOUR_CONTRAST = 0.3  # Euclidean RGB distance between a shape and the background
# kind_cue="colour": each kind also has its own hue (red, green, blue, jittered), so the
# kind is read from one pixel and only the pairing is left to learn: a task small
# networks pick up in a few hundred iterations, for the quick experiment.
KIND_COLOURS = np.array([(0.85, 0.15, 0.15), (0.15, 0.75, 0.15), (0.15, 0.25, 0.9)])
KIND_COLOUR_JITTER = 0.1
KIND_CUES = ("shape", "colour")

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}

# Circumradius / equal-area radius, so all kinds of one size cover the same area.
_SQUARE_HALF_SIDE = math.sqrt(math.pi) / 2  # half side; circumradius is this * sqrt(2)
_TRIANGLE_CIRCUM = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
_BOUND = (1.0, _SQUARE_HALF_SIDE * math.sqrt(2), _TRIANGLE_CIRCUM)


def kind_class(kind: int, bit: int) -> int:
    """The class id of a shape of `kind` (index into KINDS) with the long-range bit:
    paired 0 or alone 1 here; a probe's own bit (data/probes/grid.py)."""
    return 1 + 2 * kind + bit


@dataclass(frozen=True)
class Shape:
    """A shape placed in an image, and the class id painted under it."""

    kind: int  # index into KINDS; -1: a probe's marker (data/probes/grid.py), drawn as a disk
    label: int
    cy: float
    cx: float
    radius: float  # equal-area radius in pixels
    angle: float
    colour: tuple[float, float, float]

    @property
    def outline(self) -> int:
        return max(self.kind, 0)

    @property
    def bound(self) -> float:
        return self.radius * _BOUND[self.outline]


def _check_arguments(
    split: str, shapes_per_image: tuple[int, int], kind_cue: str, image_size: int
) -> None:
    if split not in SPLIT_STREAMS:
        raise ValueError(f"split must be one of {sorted(SPLIT_STREAMS)}, got {split!r}")
    lo, hi = shapes_per_image
    if not 1 <= lo <= hi <= 2 * len(KINDS):
        raise ValueError(f"shapes_per_image must satisfy 1 <= lo <= hi <= 6, got {lo, hi}")
    if kind_cue not in KIND_CUES:
        raise ValueError(f"kind_cue must be one of {KIND_CUES}, got {kind_cue!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")


class SyntheticShapes(RenderedImages):
    """The embedded task: `size` images of `image_size` x `image_size` pixels.

    Items are `transform(image, label)` with image float32 (3, H, W) in [0, 1] and
    label int64 (H, W); without a transform these raw tensors are returned.
    """

    class_names = CLASS_NAMES
    num_classes = NUM_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        size: int = 2048,
        image_size: int = 64,
        data_seed: int = 0,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None,
        shapes_per_image: tuple[int, int] = SHAPES_PER_IMAGE,
        shape_size: tuple[float, float] = SHAPE_SIZE,
        pair_min_distance: float = PAIR_MIN_DISTANCE,
        kind_count_weights: tuple[float, float, float] | None = KIND_COUNT_WEIGHTS,
        noise: float = NOISE,
        rotate: bool = True,
        kind_cue: str = "shape",
    ) -> None:
        _check_arguments(split, shapes_per_image, kind_cue, image_size)
        lo, hi = shapes_per_image
        self.split = split
        self.size = size
        self.image_size = image_size
        self.data_seed = data_seed
        self.transform = transform
        self.shapes_per_image = (lo, hi)
        self.shape_size = shape_size
        self.pair_min_distance = pair_min_distance
        table = count_table(lo, hi, len(KINDS))
        weights = kind_count_weights or balanced_weights(table)
        p = count_probabilities(table, weights)
        if not np.isfinite(p).all():
            raise ValueError(f"kind_count_weights {kind_count_weights} allow no image")
        self._count_table = table
        self._count_cdf = np.cumsum(p)
        self.noise = noise
        self.rotate = rotate
        self.kind_cue = kind_cue
        coords = np.arange(image_size, dtype=np.float32) + 0.5  # pixel centres
        self._ys, self._xs = coords[:, None], coords[None, :]
        # Everything that decides item i's pixels (the size only decides how many exist).
        self._render_key = (
            split,
            image_size,
            data_seed,
            self.shapes_per_image,
            tuple(shape_size),
            pair_min_distance,
            tuple(weights),
            noise,
            rotate,
            kind_cue,
        )

    @property
    def render_label(self) -> str:
        return f"rendering {self.split} images"

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.data_seed, SPLIT_STREAMS[self.split], index])

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
        """float32 (3, H, W) image in [0, 1], uint8 (H, W) label, and the shapes drawn."""
        rng = self.rng(index)
        background = rng.uniform(0.15, 0.85, size=3)
        shapes = self._layout(rng, background)
        image, label = self._render(rng, shapes, background)
        return image, label, shapes

    # -- layout -------------------------------------------------------------------------

    def _counts(self, rng: np.random.Generator) -> np.ndarray:
        """Shapes per kind, (3,), drawn from the allowed count vectors."""
        index = int(np.searchsorted(self._count_cdf, rng.random(), side="right"))
        return self._count_table[min(index, len(self._count_table) - 1)]

    def _layout(self, rng: np.random.Generator, background: np.ndarray) -> list[Shape]:
        min_dist = self.pair_min_distance * self.image_size
        # The counts are fixed first and only the placement is retried: redrawing them
        # on failure would bias images towards fewer shapes and fewer pairs. Only when
        # a layout keeps failing (large shape_size) is the pair distance relaxed, then
        # the counts redrawn, rather than looping forever.
        counts = self._counts(rng)
        for attempt in range(400):
            if attempt >= 150:
                counts = self._counts(rng)
            relax = 1.0 if attempt < 100 else 0.8
            shapes = self._try_layout(rng, counts, min_dist * relax, background)
            if shapes is not None:
                return shapes
        raise RuntimeError(
            f"could not place {self.shapes_per_image} shapes of size {self.shape_size} "
            f"in {self.image_size}x{self.image_size} pixels; lower shape_size or the count"
        )

    def _try_layout(
        self,
        rng: np.random.Generator,
        counts: np.ndarray,
        min_dist: float,
        background: np.ndarray,
        candidates: int = 64,
    ) -> list[Shape] | None:
        s = self.image_size
        lo, hi = self.shape_size
        placed: list[Shape] = []
        centres = np.zeros((0, 2))  # (P, 2) of the shapes placed so far
        bounds_placed = np.zeros(0)  # (P,)
        # Pairs first: they are the hardest to fit.
        for kind in sorted(range(len(KINDS)), key=lambda k: -counts[k]):
            n = int(counts[kind])
            if n == 0:
                continue
            radii = rng.uniform(lo * s, hi * s, size=2)
            bounds = radii * _BOUND[kind]  # (2,)
            # Many candidate pairs at once, the first valid one wins. A singleton keeps
            # member 0 of its pair (the members are exchangeable), so it is placed like
            # one half of a pair, with a phantom partner that is never drawn.
            margin = bounds[None, :, None] + 1
            c = rng.uniform(margin, s - margin, size=(candidates, 2, 2))  # (M, 2, yx)
            dist = np.linalg.norm(c[:, 0] - c[:, 1], axis=-1)  # (M,)
            gaps = np.linalg.norm(c[:, :n, None] - centres, axis=-1)  # (M, n, P)
            ok = (dist >= min_dist) & (gaps >= bounds_placed + bounds[:n, None] + 2).all((1, 2))
            if n == 2:
                ok &= dist >= bounds.sum() + 2
            first = int(np.argmax(ok))
            if not ok[first]:
                return None
            colours = rng.uniform(0, 1, size=(n, 16, 3))
            if self.kind_cue == "colour":
                jitter = KIND_COLOUR_JITTER * (2 * colours - 1)
                colours = np.clip(KIND_COLOURS[kind] + jitter, 0, 1)
            for i in range(n):
                contrast = np.linalg.norm(colours[i] - background, axis=-1) >= MIN_COLOUR_CONTRAST
                rgb = tuple(float(v) for v in colours[i, int(np.argmax(contrast))])
                angle = float(rng.uniform(0, 2 * math.pi)) if self.rotate else 0.0
                cy, cx = (float(v) for v in c[first, i])
                label = kind_class(kind, int(n == 1))
                placed.append(Shape(kind, label, cy, cx, float(radii[i]), angle, rgb))
            centres = np.array([(p.cy, p.cx) for p in placed])
            bounds_placed = np.array([p.bound for p in placed])
        return placed

    # -- rendering ----------------------------------------------------------------------

    def _render(
        self, rng: np.random.Generator, shapes: list[Shape], background: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        s = self.image_size
        ys, xs = self._ys, self._xs
        # Low-frequency texture: one random plane wave per channel, built from 1-D
        # factors (sin(a + b) = sin a cos b + cos a sin b) to avoid a full-image sin.
        freq = rng.uniform(-3, 3, size=(2, 3)) * (2 * math.pi / s)
        phase = rng.uniform(0, 2 * math.pi, size=3)
        amp = rng.uniform(0.0, 0.12, size=3)
        # Channels first throughout: it is the layout torch wants, and transposing
        # later costs more than rendering.
        row = freq[0, :, None, None] * ys + phase[:, None, None]  # (3, H, 1)
        col = freq[1, :, None, None] * xs  # (3, 1, W)
        amp = amp[:, None, None]
        sin_row = (amp * np.sin(row)).astype(np.float32)
        cos_row = (amp * np.cos(row)).astype(np.float32)
        sin_col, cos_col = np.sin(col).astype(np.float32), np.cos(col).astype(np.float32)
        image = sin_row * cos_col + cos_row * sin_col  # (3, H, W)
        image += background.astype(np.float32)[:, None, None]
        label = np.zeros((s, s), dtype=np.uint8)
        for shape in shapes:
            # Only the shape's bounding box is tested, which keeps rendering cheap.
            b = shape.bound + 1
            y0, y1 = max(0, int(shape.cy - b)), min(s, int(shape.cy + b) + 1)
            x0, x1 = max(0, int(shape.cx - b)), min(s, int(shape.cx + b) + 1)
            mask = _inside(shape, ys[y0:y1] - shape.cy, xs[:, x0:x1] - shape.cx)
            image[:, y0:y1, x0:x1][:, mask] = np.asarray(shape.colour, np.float32)[:, None]
            label[y0:y1, x0:x1][mask] = shape.label
        # Uniform noise with std `noise`: a third of the cost of Gaussian draws here.
        noise = rng.random(size=image.shape, dtype=np.float32)
        image += np.float32(2 * math.sqrt(3) * self.noise) * (noise - np.float32(0.5))
        np.clip(image, 0.0, 1.0, out=image)
        return image, label


def _inside(shape: Shape, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Pixels inside `shape`; dy (h, 1) and dx (1, w) are offsets from its centre."""
    r = shape.radius
    if shape.outline == 0:
        return dy * dy + dx * dx <= r * r
    cos, sin = math.cos(shape.angle), math.sin(shape.angle)
    if shape.outline == 1:
        u, v = dx * cos + dy * sin, dy * cos - dx * sin
        return np.maximum(np.abs(u), np.abs(v)) <= r * _SQUARE_HALF_SIDE
    # Equilateral triangle: inside all three edges, whose normals sit between the
    # vertices; the inradius is half the circumradius.
    inner = 0.5 * r * _TRIANGLE_CIRCUM
    out = np.ones(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for k in range(3):
        phi = shape.angle + math.pi / 3 + 2 * math.pi * k / 3
        out &= dx * math.cos(phi) + dy * math.sin(phi) <= inner
    return out
