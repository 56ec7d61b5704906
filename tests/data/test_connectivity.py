"""The connectivity probe: determinism, the marker on one curve, and why a network that
sees less than gap_px around a scored pixel is at chance (checked on generated data)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from attnbench.data.probes import REGISTRY, local_chance_iou
from attnbench.data.probes.connectivity import (
    IGNORE,
    MARKER_COLOUR,
    ConnectivityOptions,
    ConnectivityTask,
)
from attnbench.data.probes.curves import stamp
from attnbench.errors import UserError

IMAGES = 120
# sha256 of the first 3 training images and labels at connectivity.yaml's setting
# (paddles 6), rendered by the code of 1c985d6, before the axis, bends and twins knobs.
RECORD_DIGEST = "81a1d933ab297b5e2af6b2d02fa2246460bcfc46a1bd357b2959f7a5cc82c15e"


def _task(size: int = IMAGES, **options) -> ConnectivityTask:
    options = ConnectivityOptions(**options)
    return ConnectivityTask("train", size=size, image_size=96, options=options)


def _dilate(mask: np.ndarray, reach: int) -> np.ndarray:
    """Every pixel within Chebyshev `reach` of a True pixel of `mask`."""
    padded = torch.from_numpy(mask).float()[None, None]
    grown = torch.nn.functional.max_pool2d(padded, 2 * reach + 1, stride=1, padding=reach)
    return grown[0, 0].numpy() > 0


def test_items_are_deterministic_by_seed_and_split() -> None:
    a, b = _task(4), _task(4)
    other = ConnectivityTask("val", size=4, image_size=96)
    for i in range(4):
        (ia, la, _), (ib, lb, _) = a.sample(i), b.sample(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a.sample(0)[0], other.sample(0)[0])
    image, label = a[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert label.shape == (96, 96) and set(np.unique(label.numpy())) <= {0, 1, 2, IGNORE}


# The shipped setting, with crossings, the wide strokes of connectivity_wide.yaml, and
# twin targets along the axes (connectivity_axis.yaml), straight and with one bend.
TWINS = {"paddles": 6, "width": 0.06, "start_gap": 0.2, "axis": True, "bends": 0, "twins": True}
SWAPPED = [
    {"crossing": False},
    {"crossing": True},
    {"crossing": False, "width": 0.06, "start_gap": 0.15},
    TWINS,
    {**TWINS, "bends": 1},
]


@pytest.mark.parametrize("options", SWAPPED, ids=["apart", "crossing", "wide", "twins", "bent"])
def test_moving_the_marker_swaps_the_classes_and_changes_nothing_near_a_scored_pixel(
    options: dict,
) -> None:
    """The at-chance argument, on generated data: the same layout with the marker on the
    other target is equally likely; it changes no pixel within gap_px of a scored pixel,
    keeps the scored pixels and swaps their classes. So whatever a network sees within
    gap_px of a scored pixel, connected and unconnected are equally likely there."""
    task = _task(40, distractors=2, **options)
    reach = int(np.floor(task.gap_px))
    for index in range(40):
        _, _, (layout,) = task.sample(index)
        rng = np.random.default_rng(index)
        noise = rng.random((3, 96, 96), dtype=np.float32)
        one, lab_one = task.paint(layout, noise)
        two, lab_two = task.paint(dataclasses.replace(layout, marker=1 - layout.marker), noise)
        scored = np.isin(lab_one, (1, 2))
        assert scored.any()
        assert np.array_equal(scored, np.isin(lab_two, (1, 2)))
        assert np.array_equal(lab_one[scored], 3 - lab_two[scored])
        changed = (one != two).any(0)
        assert changed.any()  # the marker moved
        assert not (_dilate(changed, reach) & scored).any(), index


def test_connected_and_unconnected_pixels_balance_and_a_coin_flip_scores_a_third() -> None:
    """The documented chance level: a network that finds every curve pixel but cannot see
    the marker scores local_chance_iou (1/3) on the long-range classes."""
    task = _task()
    rng = np.random.default_rng(0)
    confusion = np.zeros((3, 3))
    counts = np.zeros(3)
    for index in range(IMAGES):
        _, label, _ = task.sample(index)
        scored = np.isin(label, (1, 2))
        counts += np.bincount(label[scored], minlength=3)
        # The best local guess: each curve pixel either class with odds 1/2.
        guess = np.where(scored, 1 + rng.integers(0, 2, label.shape), label)
        keep = label != IGNORE
        np.add.at(confusion, (label[keep], guess[keep]), 1)
    # Per image the coin decides which target is connected: the two masses agree to
    # within a few percent over 120 images (each ~25 px a target).
    assert counts[1] / counts[1:].sum() == pytest.approx(0.5, abs=0.06)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert np.mean(iou[[1, 2]]) == pytest.approx(local_chance_iou(), abs=0.03)
    assert REGISTRY["connectivity"].chance == local_chance_iou()


@pytest.mark.parametrize("options", [{}, TWINS], ids=["free", "twins"])
def test_the_marker_touches_its_target_and_no_other_curve(options: dict) -> None:
    task = _task(60, distractors=3, **options)
    g = task.geometry
    for index in range(60):
        image, label, (layout,) = task.sample(index)
        start = layout.starts[layout.marker]
        assert np.allclose(layout.curves[layout.marker][0], start, atol=g.paddle_px)
        marker = (np.abs(image - MARKER_COLOUR[:, None, None]) < 0.1).all(0)
        assert marker.any() and not (label[marker]).any()  # the marker is background
        # The marker's disk grown by two pixels: no other curve's stroke comes that close.
        keep_off = _dilate(marker, 2)
        for n, curve in enumerate(layout.curves):
            touches = stamp(curve, g.width_px, 96)[keep_off].any()
            assert touches == (n == layout.marker), (index, n)


def test_without_crossing_no_two_curves_share_a_pixel_and_knobs_take_effect() -> None:
    task = _task(30, distractors=2, paddles=6)
    longer = _task(30, distractors=2, paddles=10)
    for index in range(30):
        _, _, (layout,) = task.sample(index)
        assert len(layout.curves) == 4
        strokes = np.stack([stamp(c, task.geometry.width_px, 96) for c in layout.curves])
        assert strokes.sum(0).max() == 1
    ink = [sum(len(c) for c in t.sample(0)[2][0].curves) for t in (task, longer)]
    assert ink[1] > ink[0]


def _paddle_directions(curve: np.ndarray, paddles: int) -> np.ndarray:
    """(K, 2): each paddle's unit direction, from its first point to its last."""
    ends = curve.reshape(paddles, -1, 2)[:, [0, -1]]  # (K, 2 points, 2)
    along = ends[:, 1] - ends[:, 0]
    return along / np.linalg.norm(along, axis=1, keepdims=True)


@pytest.mark.parametrize("bends", [0, 1, 2])
def test_axis_curves_run_along_rows_and_columns_with_the_bends_asked(bends: int) -> None:
    task = _task(20, **{**TWINS, "bends": bends})
    for index in range(20):
        _, _, (layout,) = task.sample(index)
        for curve in layout.curves:
            directions = _paddle_directions(curve, 6)
            assert np.allclose(np.abs(directions).max(1), 1.0)  # on a row or a column
            cosines = (directions[1:] * directions[:-1]).sum(1)  # (K - 1,) at each joint
            turns = np.abs(cosines) < 1e-6
            assert turns.sum() == bends
            assert np.allclose(cosines[~turns], 1.0)  # the other joints go straight on


@pytest.mark.parametrize("bends", [0, 1])
def test_twin_targets_are_one_shape_moved_from_start_to_start_and_keep_apart(bends: int):
    task = _task(20, **{**TWINS, "bends": bends})
    g = task.geometry
    for index in range(20):
        _, label, (layout,) = task.sample(index)
        first, second = layout.curves[:2]
        assert np.allclose(second - first, layout.starts[1] - layout.starts[0])
        # Without crossings the twins keep the clearance that any two curves keep.
        gaps = np.linalg.norm(first[:, None] - second[None], axis=-1)  # (P, P)
        assert gaps.min() >= g.clearance_px - 0.5, (index, gaps.min())
        assert np.isin(label, (1, 2)).any()


def test_the_default_curves_render_the_pixels_of_the_committed_records() -> None:
    """The knobs added later draw nothing at their defaults: the digest of the first
    images is that of the code the committed connectivity records were trained with."""
    task = _task(3, paddles=6)
    digest = hashlib.sha256()
    for index in range(3):
        image, label, _ = task.sample(index)
        digest.update(image.tobytes())
        digest.update(label.tobytes())
    assert digest.hexdigest() == RECORD_DIGEST


def test_a_layout_that_cannot_fit_is_a_user_error_naming_the_options() -> None:
    task = _task(1, paddles=12, distractors=3, width=0.08, start_gap=0.3, twins=True, axis=True)
    with pytest.raises(UserError, match=r"data\.probe_options\.connectivity: no layout"):
        task.sample(0)


def test_bends_need_axis_curves_and_fewer_bends_than_joints() -> None:
    assert ConnectivityOptions(bends=1).problem() is not None
    assert ConnectivityOptions(axis=True, paddles=3, bends=3).problem() is not None
    assert ConnectivityOptions(axis=True, paddles=3, bends=2).problem() is None


def test_scored_pixels_are_farther_than_gap_px_from_both_starts() -> None:
    task = _task(30)
    for index in range(30):
        _, label, (layout,) = task.sample(index)
        ys, xs = np.nonzero(np.isin(label, (1, 2)))
        for cy, cx in layout.starts:
            chebyshev = np.maximum(np.abs(ys + 0.5 - cy), np.abs(xs + 0.5 - cx))
            assert chebyshev.min() > task.gap_px + task.marker_px


def test_the_task_goes_the_device_resident_path_like_the_other_generated_sets() -> None:
    from attnbench.data.device_batches import device_copy, release_device_copy, resident_fits
    from attnbench.data.transforms import SegTransform

    flip = SegTransform(flip=True)
    task = ConnectivityTask("train", size=6, image_size=32, transform=flip)
    device = torch.device("cpu")
    assert resident_fits(task, device)
    images, labels = device_copy(task, flip, device)
    assert images.shape == (6, 3, 32, 32) and labels.shape == (6, 32, 32)
    assert torch.equal(labels[2].long(), task.raw_item(2)[1].long())
    release_device_copy()
