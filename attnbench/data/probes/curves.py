"""Dashed curves for the connectivity probe: chains of short straight paddles with gaps.

After the idea of Linsley et al.'s `snakes2` generator (the images of Pathfinder in
Long Range Arena): a curve is grown paddle by paddle, each paddle turning from the last
by a random angle within `turn`, with a `gap` before it. Its geometry is continuous
(pixel units, (y, x) with pixel centres at i + 0.5); each paddle is kept as points
spaced at most half a pixel apart, which the checks and the rasterisation
(`stamp`) use. Everything is drawn from the numpy generator given, so a
layout is fixed by the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WALKS = 48  # random walks a curve draws at once, the first that fits kept
SELF_CHECKED = 8  # of those inside and unblocked, how many are checked for self-clearance
TRIES_PER_CURVE = 20  # fresh starts (position and heading) before the layout is redrawn


@dataclass(frozen=True)
class CurveGeometry:
    """How every curve of an image is drawn, in pixels."""

    paddles: int  # paddles per curve
    paddle_px: float  # length of a paddle
    gap_px: float  # empty stretch between paddles
    turn: float  # largest change of heading between paddles, radians
    width_px: float  # stroke width
    clearance_px: float  # least distance kept between curves that may not touch
    border_px: float  # least distance of a curve to the image edge
    size: int  # image side
    bends: int | None = None  # None: free turns within `turn`; k: k right-angle turns

    def walks(self, start: np.ndarray, headings: np.ndarray) -> np.ndarray:
        """The paddles of curves from `start` with paddle headings (B, K): (B, K, P, 2),
        P points a paddle, at most half a pixel apart; a gap before every paddle but the first."""
        n = max(2, math.ceil(self.paddle_px / 0.5) + 1)
        direction = np.stack([np.sin(headings), np.cos(headings)], -1)  # (B, K, 2)
        step = np.full(headings.shape[1], self.paddle_px + self.gap_px)
        step[0] = self.paddle_px
        ends = start + np.cumsum(step[None, :, None] * direction, axis=1)  # (B, K, 2)
        along = np.linspace(-self.paddle_px, 0.0, n)  # (P,): back from each paddle's end
        return ends[:, :, None, :] + along[None, None, :, None] * direction[:, :, None, :]


def grow_curve(
    rng: np.random.Generator,
    geometry: CurveGeometry,
    start: np.ndarray,
    heading: float,
    blocked: np.ndarray,
) -> np.ndarray | None:
    """A curve from `start`, heading about `heading`: its points (K * P, 2), or None.

    WALKS random walks are drawn at once, each paddle turning from the last by up to
    `turn` either way; the first that stays `border_px` inside the image, off the
    `blocked` (H, W) pixels, and `clearance_px` from itself (paddles two or more apart)
    is kept. With `bends`, every paddle runs along a row or a column (from a heading that
    is a multiple of 90 degrees) and exactly `bends` joints turn by a right angle.
    """
    k = geometry.paddles
    if geometry.bends is None:
        turns = rng.uniform(-geometry.turn, geometry.turn, (WALKS, k))  # (B, K)
    else:
        turns = _right_angles(rng, geometry.bends, k)
    walks = geometry.walks(start, heading + np.cumsum(turns, axis=1))  # (B, K, P, 2)
    flat = walks.reshape(WALKS, -1, 2)  # (B, K * P, 2)
    low, high = geometry.border_px, geometry.size - geometry.border_px
    ok = ((flat >= low) & (flat <= high)).all((1, 2))  # (B,)
    ok &= ~hits(flat, blocked)
    survivors = np.flatnonzero(ok)[:SELF_CHECKED]  # the costly check on a few only
    fits = survivors[_self_clear(walks[survivors], geometry.clearance_px)]
    return flat[fits[0]] if len(fits) else None


def _right_angles(rng: np.random.Generator, bends: int, paddles: int) -> np.ndarray:
    """(B, K) turns: `bends` of +-90 degrees at distinct joints between paddles, else 0."""
    joints = rng.random((WALKS, paddles - 1)).argsort(1)[:, :bends] + 1  # (B, bends)
    turns = np.zeros((WALKS, paddles))
    signs = rng.choice((-1.0, 1.0), (WALKS, bends))
    np.put_along_axis(turns, joints, signs * (math.pi / 2), axis=1)
    return turns


def _self_clear(walks: np.ndarray, distance: float) -> np.ndarray:
    """(B,): whether each curve's paddles two or more apart keep `distance` (ends and middles)."""
    b, k, p, _ = walks.shape
    marks = walks[:, :, [0, p // 2, p - 1]].reshape(b, 3 * k, 2)  # (B, 3K, 2)
    gaps = ((marks[:, :, None] - marks[:, None]) ** 2).sum(-1)  # (B, 3K, 3K)
    paddle = np.repeat(np.arange(k), 3)
    apart = np.abs(paddle[:, None] - paddle[None, :]) >= 2  # (3K, 3K)
    if not apart.any():
        return np.ones(b, dtype=bool)
    return gaps[:, apart].min(1) >= distance * distance


def hits(candidates: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(T,): whether some point of each candidate (T, P, 2) falls in a True pixel of `mask`."""
    size = mask.shape[0]
    index = np.clip(np.floor(candidates).astype(np.int64), 0, size - 1)  # (T, P, 2)
    return mask[index[..., 0], index[..., 1]].any(1)


def stamp(points: np.ndarray, width_px: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels whose centre lies within width_px / 2 of
    some point of (P, 2): the stroke, rasterised."""
    half = width_px / 2
    reach = math.ceil(half) + 1
    offsets = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    base = np.floor(points).astype(np.int64)  # (P, 2)
    ys = base[:, 0, None] + oy.ravel()[None, :]  # (P, O)
    xs = base[:, 1, None] + ox.ravel()[None, :]
    near = (ys + 0.5 - points[:, 0, None]) ** 2 + (xs + 0.5 - points[:, 1, None]) ** 2
    keep = (near <= half * half) & (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    mask = np.zeros((size, size), dtype=bool)
    mask[ys[keep], xs[keep]] = True
    return mask
