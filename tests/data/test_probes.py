"""The grid probes (pairing, retrieval): determinism, balance, geometry, and why a local
network is at chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnbench.data.probes import local_chance_iou
from attnbench.data.probes.grid import (
    CLASS_NAMES,
    LONG_RANGE_CLASSES,
    MARKER_COLOURS,
    PROBES,
    ProbeTask,
    alone_balancing_empty,
)

IMAGES = 600  # enough for the balance checks below to be tight


def _items(task: ProbeTask, n: int = IMAGES):
    return [task.sample(i)[2] for i in range(n)]


@pytest.mark.parametrize("probe", PROBES)
def test_items_are_deterministic_by_seed_and_split(probe):
    a = ProbeTask("train", probe=probe, size=4, image_size=64)
    b = ProbeTask("train", probe=probe, size=4, image_size=64)
    other = ProbeTask("val", probe=probe, size=4, image_size=64)
    for i in range(4):
        (ia, la, _), (ib, lb, _) = a.sample(i), b.sample(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a.sample(0)[0], other.sample(0)[0])
    image, label = a[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert label.shape == (64, 64) and label.dtype == torch.int64


def test_pairing_empty_cell_odds_make_alone_a_coin_flip():
    for grid in (2, 3):
        q = (1 - alone_balancing_empty(grid)) / 3
        assert (1 - q) ** (grid * grid - 1) == pytest.approx(0.5)


@pytest.mark.parametrize("probe", PROBES)
def test_long_range_half_of_each_kind_is_balanced(probe):
    task = ProbeTask("train", probe=probe, size=IMAGES, image_size=64)
    labels = np.array([item.label for items in _items(task) for item in items if item.kind >= 0])
    kinds = (labels - 1) // 2
    for kind in range(3):
        second = (labels[kinds == kind] - 1) % 2  # paired/alone, or black/white
        # Binomial sd at about 400 shapes a kind is 0.025: 0.5 +- 0.1 is four sd wide.
        assert second.mean() == pytest.approx(0.5, abs=0.1), (probe, kind)


@pytest.mark.parametrize("probe", PROBES)
def test_items_of_different_cells_are_gap_apart(probe):
    task = ProbeTask("train", probe=probe, size=60, image_size=96)
    ys, xs = np.mgrid[0:96, 0:96] + 0.5
    for index in range(60):
        _, _, items = task.sample(index)
        masks = [task.item_mask(item) for item in items]
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a = np.stack([ys[masks[i]], xs[masks[i]]], 1)
                b = np.stack([ys[masks[j]], xs[masks[j]]], 1)
                closest = np.linalg.norm(a[:, None] - b[None], axis=-1).min()
                assert closest >= task.gap_px - 1.5, (index, i, j, closest)


def test_retrieval_has_one_marker_that_no_shape_or_background_resembles():
    task = ProbeTask("train", probe="retrieval", size=200, image_size=64)
    for index in range(200):
        _, label, items = task.sample(index)
        markers = [item for item in items if item.kind < 0]
        assert len(markers) == 1
        colour = np.asarray(markers[0].colour)
        for item in items:
            if item.kind >= 0:
                assert np.linalg.norm(np.asarray(item.colour) - MARKER_COLOURS, axis=1).min() >= 0.5
                assert (item.label - 1) % 2 == int(colour.mean() > 0.5)  # black 0, white 1
        assert not (label[task.item_mask(markers[0])]).any()  # the marker is background


@pytest.mark.parametrize("probe", PROBES)
def test_long_range_bit_is_independent_of_everything_in_the_own_cell(probe):
    """The analytic argument, checked on generated data.

    Within `gap_px` of a shape there is only its own cell's item and the image-wide
    background. Neither predicts the long-range bit: its rate is the same whatever
    the shape's kind, size, position, colour or the background's brightness.
    """
    task = ProbeTask("train", probe=probe, size=IMAGES, image_size=64)
    rows = []
    for index in range(IMAGES):
        image, _, items = task.sample(index)
        brightness = float(image.mean())
        for item in items:
            if item.kind >= 0:
                bit = (item.label - 1) % 2
                rows.append(
                    (bit, item.kind, item.radius, item.cy, item.cx, sum(item.colour), brightness)
                )
    rows = np.array(rows)
    bit = rows[:, 0]
    for column in range(1, rows.shape[1]):
        feature = rows[:, column]
        # Split at the median: the bit's rate must not differ between the halves.
        high = feature > np.median(feature)
        gap = abs(bit[high].mean() - bit[~high].mean())
        # Two independent halves of about 650 shapes: sd of the difference about 0.028.
        assert gap < 0.12, (probe, column, gap)


def test_local_chance_level_is_a_third_and_is_what_a_coin_flip_scores():
    assert local_chance_iou() == pytest.approx(1 / 3)
    task = ProbeTask("val", probe="pairing", size=300, image_size=64)
    rng = np.random.default_rng(0)
    confusion = np.zeros((7, 7))
    for index in range(300):
        _, label, items = task.sample(index)
        guess = label.copy()
        for item in items:  # the best a local network can do: the kind, and a coin flip
            if item.kind >= 0:
                guess[task.item_mask(item)] = 1 + 2 * item.kind + rng.integers(2)
        np.add.at(confusion, (label.ravel(), guess.ravel()), 1)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert np.mean(iou[list(LONG_RANGE_CLASSES)]) == pytest.approx(1 / 3, abs=0.05)
    assert len(CLASS_NAMES["pairing"]) == 7


@pytest.mark.parametrize(
    "experiment",
    [
        "probes.yaml",
        "probes_gates.yaml",
        "probes_gpu.yaml",
        "probes_long.yaml",
        "connectivity.yaml",
        "connectivity_wide.yaml",
        "connectivity_axis.yaml",
    ],
)
def test_the_plain_head_of_each_shipped_probe_experiment_cannot_reach_another_cell(experiment):
    """The construction's premise, on the shipped settings: the `none` model's receptive
    field (the support of its centre pixel's input gradient) is narrower than the gap
    between items of different cells, so no pixel of a shape sees any other item."""
    from pathlib import Path

    from attnbench.data import build_dataset
    from attnbench.experiment.config import expand_probes, load_config
    from attnbench.model.receptive_field import receptive_field
    from attnbench.model.segmenter import build_model

    path = Path(__file__).parents[2] / "experiments" / experiment
    cfg = load_config(path, ["data.train_size=16", "data.val_size=4"])
    plain = [spec for spec in cfg.heads if spec.module == "none"]
    assert plain and cfg.probes
    for part in expand_probes(cfg):
        task = build_dataset(part.data, "val", train=False)
        torch.manual_seed(0)
        model = build_model(part.model, task.num_classes, "none")
        field = receptive_field(model, part.data.image_size)
        assert field.support < task.gap_px, (part.name, field, task.gap_px)
