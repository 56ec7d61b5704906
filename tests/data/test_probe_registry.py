"""The probe registry: what each probe declares, the config's checks against it, and the
grid probes' pixels unchanged by the move into it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from attnbench.data import build_dataset, dataset_info
from attnbench.data.probes import PROBES, REGISTRY, ProbeTask, local_chance_iou
from attnbench.experiment.config import ConfigError, load_config

# sha256 (first 16 hex digits) of items 0-4 (image bytes, then label bytes, each item),
# rendered by data/probes.py at main's commit d9c4adf, before the registry existed.
BEFORE = [
    ("pairing", "train", dict(image_size=64), "c3fd70ed09b63d94"),
    ("pairing", "val", dict(image_size=96, margin=0.2, kind_cue="colour"), "364fcf44cd3d237d"),
    ("pairing", "train", dict(image_size=48, grid=3, margin=0.1, kind_cue="shape", data_seed=3),
     "19884e7c2d069fd8"),
    ("retrieval", "train", dict(image_size=64), "eea00250b04a6757"),
    ("retrieval", "val", dict(image_size=96, margin=0.2, kind_cue="colour"), "7dd5643bd3d1d6d9"),
    ("retrieval", "train", dict(image_size=48, grid=3, margin=0.1, kind_cue="shape", data_seed=3),
     "0f439d1ba290e7a7"),
]  # fmt: skip

SUITE = """\
name: suite
probes: [pairing, retrieval, connectivity]
seeds: [0]
data: {dataset: probe, image_size: 64, train_size: 4, val_size: 2}
model:
  backbone: {depth: 18, width: 8, stages: 0}
  head: {channels: 16, aux: false}
heads:
  - {name: none, module: none}
"""


@pytest.mark.parametrize(("probe", "split", "kwargs", "digest"), BEFORE)
def test_grid_probes_render_the_pixels_and_labels_they_did_before_the_registry(
    probe: str, split: str, kwargs: dict, digest: str
) -> None:
    task = ProbeTask(split, probe=probe, size=5, **kwargs)
    h = hashlib.sha256()
    for index in range(5):
        image, label, _ = task.sample(index)
        h.update(np.ascontiguousarray(image).tobytes())
        h.update(label.tobytes())
    assert h.hexdigest()[:16] == digest


def test_the_registry_holds_the_three_probes_in_report_order() -> None:
    assert PROBES == ("pairing", "retrieval", "connectivity")
    assert all(REGISTRY[name].name == name for name in PROBES)


@pytest.mark.parametrize("name", PROBES)
def test_each_probe_declares_consistent_classes_chance_and_capability(name: str) -> None:
    probe = REGISTRY[name]
    assert probe.class_names[0] == "background"
    assert probe.long_range_classes and 0 not in probe.long_range_classes
    assert max(probe.long_range_classes) < len(probe.class_names)
    assert 0 < probe.chance < 1 and probe.chance_derivation
    assert probe.capability.strip() and probe.capability.count(".") == 0  # one sentence


@pytest.mark.parametrize("name", PROBES)
def test_the_config_builds_each_probe_through_its_registry_entry(tmp_path: Path, name: str):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    cfg = load_config(path, [f"data.probe={name}"])
    task = build_dataset(cfg.data, "val", train=False)
    info = dataset_info(cfg.data)
    assert info.class_names == REGISTRY[name].class_names == task.class_names
    assert tuple(task.long_range_classes) == REGISTRY[name].long_range_classes
    image, label = task[0]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64)


def test_grid_probes_share_the_balanced_two_class_chance() -> None:
    assert REGISTRY["pairing"].chance == REGISTRY["retrieval"].chance == local_chance_iou()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("probes=[counting]", r"probes: expected some of pairing, retrieval, connectivity, "
         r"got 'counting'"),
        ("data.probe=counting", r"data\.probe: expected one of pairing, retrieval, connectivity"),
        ("data.probe_options.counting.x=1", r"data\.probe_options\.counting: expected a probe"),
        ("data.probe_options.connectivity.loops=3",
         r"data\.probe_options\.connectivity\.loops: unknown option; valid options: paddles"),
        ("data.probe_options.connectivity.paddles=many",
         r"data\.probe_options\.connectivity\.paddles: expected int, got 'many'"),
        ("data.probe_options.connectivity.paddles=0",
         r"data\.probe_options\.connectivity: need paddles >= 1"),
        ("data.probe_options.pairing.grid=3",
         r"data\.probe_options\.pairing: pairing takes no options"),
    ],
)  # fmt: skip
def test_bad_probe_keys_are_one_line_errors_naming_the_key(
    tmp_path: Path, override: str, message: str
) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, [override])
    assert "\n" not in str(info.value)


def test_probe_options_reach_the_connectivity_task(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    overrides = ["data.probe=connectivity", "data.probe_options.connectivity.paddles=5",
                 "data.probe_options.connectivity.crossing=true"]  # fmt: skip
    cfg = load_config(path, overrides)
    task = build_dataset(cfg.data, "train", train=True)
    assert task.options.paddles == 5 and task.options.crossing and task.options.distractors == 1
