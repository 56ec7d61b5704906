"""The connectivity probe: is this curve the one the marker touches?

Tracing a path: following a chain of local links from a cue to a pixel far along it,
a chained (multi-hop) use of context. After Pathfinder (Long Range Arena, Tay et al.
2020; Linsley et al.'s snakes2 generator), in its segmentation form.

Each image holds `2 + distractors` dashed curves (curves.py) that all look alike: the
same paddles, gaps, width and grey level. Two of them, the targets, start `start_gap`
apart; a red disk, the marker, sits on the start of one of them, picked by a fair coin
after the layout is drawn. Classes: background, `connected` (the target the marker
touches), `unconnected` (the other target). Pixels that no network could be scored
on fairly are left out (label 255): the distractors (clutter that only has to be told
apart from a target by tracing), pixels that two curves share, and every target pixel
within `gap_px` (Chebyshev, from the pixel to any pixel of a start disk, `near` of the
image side) of either start. The layout never lets another curve come within
`clearance` of either start disk, so the marker touches exactly one curve.

Why a local network is at chance: swap which target carries the marker and the image
changes only inside the two start disks, while the scored pixels and their classes
swap (connected <-> unconnected) and nothing else moves. Every scored pixel is more
than `gap_px` from both disks, so a network whose receptive field reaches less than
`gap_px` sees the same input in both worlds, which are equally likely: its odds of
either class are exactly 1/2 at every scored pixel, the two classes have equal mass
in expectation, and its best long-range mIoU is base.local_chance_iou (1/3).
(A test draws both worlds for every image and checks this.)

Knobs (`data.probe_options.connectivity`): `paddles` (curve length), `distractors`,
and `crossing` (whether curves may cross one another; a curve never crosses itself).
`axis` lays every paddle along a row or a column, with `bends` right-angle turns per
curve, and `twins` makes the second target the first one's shape moved to its own
start, so that no content anywhere tells the two apart. The marker's target is still
drawn by a fair coin after the layout, so the argument above holds for every setting.
Sizes are fractions of the image side, so the task scales with `image_size`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...errors import UserError
from ..rendered import RenderedImages
from ..synthetic import SPLIT_STREAMS
from .base import Probe, local_chance_iou, probe_options
from .curves import TRIES_PER_CURVE, CurveGeometry, grow_curve, hits, stamp

CLASS_NAMES = ("background", "connected", "unconnected")
LONG_RANGE_CLASSES = (1, 2)
IGNORE = 255
MARKER_COLOUR = np.array([0.9, 0.15, 0.15], dtype=np.float32)
LAYOUT_TRIES = 50


@dataclass(frozen=True)
class ConnectivityOptions:
    """The probe's knobs; lengths are fractions of the image side."""

    paddles: int = 8  # paddles per curve: the curve length
    distractors: int = 1  # curves beside the two targets, left out of the labels
    crossing: bool = False  # whether curves may cross one another
    near: float = 0.18  # target pixels this close to a start are not scored (gap_px)
    paddle: float = 0.05  # paddle length
    gap: float = 0.045  # gap between paddle centrelines (the stroke width closes part of it)
    turn: float = 40.0  # largest turn between paddles, degrees (unused with axis)
    width: float = 0.035  # stroke width
    start_gap: float = 0.1  # distance between the two targets' starts
    marker: float = 0.025  # marker radius
    axis: bool = False  # paddles run along rows and columns only
    bends: int = 0  # with axis: right-angle turns per curve (`turn` is then unused)
    twins: bool = False  # the second target is the first one's shape, moved to its start

    def problem(self) -> str | None:
        if self.paddles < 1 or self.distractors < 0:
            return f"need paddles >= 1 and distractors >= 0, got {self.paddles}, {self.distractors}"
        if not 0 < self.near < 0.5 or min(self.paddle, self.width, self.marker) <= 0:
            return "need 0 < near < 0.5 and positive paddle, width and marker"
        if self.gap < 0 or not 0 <= self.turn <= 180 or self.start_gap <= 2 * self.marker:
            return "need gap >= 0, 0 <= turn <= 180 and start_gap > 2 * marker"
        if not 0 <= self.bends < self.paddles or (self.bends and not self.axis):
            return f"need 0 <= bends < paddles, and axis: true for bends > 0; got {self.bends}"
        return None


@dataclass(frozen=True)
class Layout:
    curves: tuple[np.ndarray, ...]  # points (P, 2) of each curve: the two targets first
    starts: np.ndarray  # (2, 2): where each target starts (a marker disk's centre)
    marker: int  # which target carries the marker (0 or 1)
    background: float  # grey level
    ink: float  # the curves' grey level


class ConnectivityTask(RenderedImages):
    """`size` images of `image_size` pixels of the connectivity probe, items (image, label)."""

    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)
    long_range_classes = LONG_RANGE_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        size: int = 2048,
        image_size: int = 96,
        options: ConnectivityOptions | None = None,
        noise: float = 0.04,
        data_seed: int = 0,
        transform: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None,
    ) -> None:
        if split not in SPLIT_STREAMS:
            raise ValueError(f"split must be one of {sorted(SPLIT_STREAMS)}, got {split!r}")
        self.options = o = options or ConnectivityOptions()
        if o.problem():
            raise ValueError(None, o.problem())
        self.split, self.size, self.image_size = split, size, image_size
        self.noise, self.data_seed, self.transform = noise, data_seed, transform
        s = float(image_size)
        width = max(1.0, o.width * s)
        self.geometry = CurveGeometry(
            paddles=o.paddles, paddle_px=o.paddle * s, gap_px=o.gap * s,
            turn=math.radians(o.turn), width_px=width, clearance_px=1.5 * width + 1,
            border_px=width + 1, size=image_size, bends=o.bends if o.axis else None,
        )  # fmt: skip
        self.marker_px = o.marker * s
        self._render_key = ("connectivity", split, image_size, o, noise, data_seed)

    @property
    def gap_px(self) -> float:
        """The least Chebyshev distance from a scored pixel to any pixel of either start disk."""
        return self.options.near * self.image_size

    @property
    def render_label(self) -> str:
        return f"rendering connectivity {self.split}"

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, list[Layout]]:
        """float32 (3, H, W) image in [0, 1], uint8 (H, W) label, and [the layout drawn]."""
        rng = np.random.default_rng([self.data_seed, SPLIT_STREAMS[self.split], index, 11])
        layout = self.layout(rng)
        noise = rng.random(size=(3, self.image_size, self.image_size), dtype=np.float32)
        image, label = self.paint(layout, noise)
        return image, label, [layout]

    def layout(self, rng: np.random.Generator) -> Layout:
        """The curves, the starts and the marker's target: everything but the pixel noise."""
        for _ in range(LAYOUT_TRIES):
            curves, starts = self._curves(rng)
            if curves is not None:
                background, ink = rng.uniform(0.1, 0.35), rng.uniform(0.7, 0.95)
                marker = int(rng.integers(2))
                return Layout(tuple(curves), starts, marker, background, ink)
        o = self.options
        raise UserError(
            f"data.probe_options.connectivity: no layout of {2 + o.distractors} curves of "
            f"{o.paddles} paddles fits in {self.image_size} px ({LAYOUT_TRIES} tries); "
            "use fewer paddles or distractors, or a larger image_size"
        )

    def _curves(self, rng: np.random.Generator) -> tuple[list[np.ndarray] | None, np.ndarray]:
        """Both targets, then the distractors; None when one of them found no room."""
        g, o, s = self.geometry, self.options, self.image_size
        middle = rng.uniform(0.3 * s, 0.7 * s, 2)
        angle = rng.uniform(0, 2 * math.pi)
        offset = 0.5 * o.start_gap * s * np.array([math.sin(angle), math.cos(angle)])
        starts = np.stack([middle - offset, middle + offset])  # (2, 2)
        disk = self.marker_px + g.clearance_px  # other curves keep this far from a start
        curves: list[np.ndarray] = []
        strokes = np.zeros((s, s), dtype=bool)  # (H, W): what later curves keep clear of
        # No curve but a target's own comes near a start disk: one curve touches the marker.
        disks = np.stack([stamp(starts[k : k + 1], 2 * disk, s) for k in range(2)])  # (2, H, W)
        for n in range(2 + o.distractors):
            blocked = strokes | disks[1 - n] if n < 2 else strokes | disks[0] | disks[1]
            if n == 1 and o.twins:
                # _grow kept only a first target whose moved copy fits (_twin_fits).
                curve = curves[0] + (starts[1] - starts[0])
            else:
                twin = (starts[1] - starts[0], disks[0]) if n == 0 and o.twins else None
                curve = self._grow(rng, starts[n] if n < 2 else None, blocked, twin)
            if curve is None:
                return None, starts
            curves.append(curve)
            if not o.crossing:  # later curves keep clearance_px from this one
                strokes |= stamp(curve, 2 * g.clearance_px, s)
        return curves, starts

    def _grow(
        self,
        rng: np.random.Generator,
        start: np.ndarray | None,
        blocked: np.ndarray,
        twin: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray | None:
        """A curve from `start` (None: anywhere) off the `blocked` pixels, or None. With
        `twin` (shift, its blocked pixels), only a curve whose copy moved by `shift` also
        fits, keeping clear of the curve itself unless curves may cross."""
        g, s = self.geometry, self.image_size
        for _ in range(TRIES_PER_CURVE):
            at = start if start is not None else rng.uniform(g.border_px, s - g.border_px, 2)
            if self.options.axis:
                heading = int(rng.integers(4)) * math.pi / 2
            else:
                heading = rng.uniform(0, 2 * math.pi)
            curve = grow_curve(rng, g, at, heading, blocked)
            if curve is not None and (twin is None or self._twin_fits(curve, *twin)):
                return curve
        return None

    def _twin_fits(self, curve: np.ndarray, shift: np.ndarray, blocked: np.ndarray) -> bool:
        """Whether `curve` moved by `shift` stays inside, off `blocked` and, unless curves
        may cross, clear of `curve`. Both targets then have one shape."""
        g = self.geometry
        copy = curve + shift  # (P, 2)
        if not ((copy >= g.border_px) & (copy <= g.size - g.border_px)).all():
            return False
        if not self.options.crossing:
            blocked = blocked | stamp(curve, 2 * g.clearance_px, g.size)
        return not hits(copy[None], blocked)[0]

    def paint(self, layout: Layout, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image and the label of `layout`, with `noise` (3, H, W) uniform in [0, 1)."""
        s, g = self.image_size, self.geometry
        strokes = np.stack([stamp(c, g.width_px, s) for c in layout.curves])  # (C, H, W)
        ink = strokes.any(0)  # (H, W)
        image = np.full((3, s, s), layout.background, dtype=np.float32)
        image[:, ink] = np.float32(layout.ink)
        disks = self._disks(layout.starts)  # (2, H, W)
        image[:, disks[layout.marker]] = MARKER_COLOUR[:, None]
        image += np.float32(2 * math.sqrt(3) * self.noise) * (noise - np.float32(0.5))
        np.clip(image, 0.0, 1.0, out=image)
        label = np.zeros((s, s), dtype=np.uint8)
        label[ink] = IGNORE
        scored = (strokes.sum(0) == 1) & ~self._near(layout.starts)  # (H, W)
        for target in (0, 1):
            label[scored & strokes[target]] = 1 if target == layout.marker else 2
        label[disks[layout.marker]] = 0  # the marker itself is background
        return image, label

    def _pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        coords = np.arange(self.image_size, dtype=np.float64) + 0.5
        return coords[None, :, None], coords[None, None, :]  # (1, H, 1), (1, 1, W)

    def _disks(self, starts: np.ndarray) -> np.ndarray:
        ys, xs = self._pixel_centres()
        cy, cx = starts[:, 0, None, None], starts[:, 1, None, None]
        return (ys - cy) ** 2 + (xs - cx) ** 2 <= self.marker_px**2  # (2, H, W)

    def _near(self, starts: np.ndarray) -> np.ndarray:
        """(H, W): pixels within gap_px (Chebyshev) of some pixel of either start disk."""
        ys, xs = self._pixel_centres()
        cy, cx = starts[:, 0, None, None], starts[:, 1, None, None]
        chebyshev = np.maximum(np.abs(ys - cy), np.abs(xs - cx))  # (2, H, W)
        # A disk pixel's centre lies within marker_px of the disk's centre.
        return (chebyshev <= self.gap_px + self.marker_px).any(0)


def _stack(points: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(points) if points else np.empty((0, 2))


def build(data: Any, split: str, size: int, transform: Any) -> ConnectivityTask:
    """The registry's `build`: the task from the data config and its probe options."""
    options = probe_options(PROBE, (data.probe_options or {}).get("connectivity"))
    return ConnectivityTask(
        split, size=size, image_size=data.image_size, options=options,
        data_seed=data.data_seed, transform=transform,
    )  # fmt: skip


PROBE = Probe(
    name="connectivity",
    capability="tracing a path: is this pixel's curve, through its chain of paddles and "
    "gaps, the one that touches the marker far away?",
    class_names=CLASS_NAMES,
    long_range_classes=LONG_RANGE_CLASSES,
    chance=local_chance_iou(),
    chance_derivation="moving the marker to the other target's start changes no pixel "
    "within gap_px of a scored pixel and swaps the two classes; both worlds are equally "
    "likely, so without context a scored pixel is either class with odds 1/2 and the two "
    "classes have equal mass: a coin flip scores 1/3 per class (base.local_chance_iou)",
    build=build,
    options=ConnectivityOptions,
)
