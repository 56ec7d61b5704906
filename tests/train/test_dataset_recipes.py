"""experiments/{cityscapes,ade20k}_heads.yaml end to end on tiny trees in the official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_datasets import make_ade, make_cityscapes
from test_voc_recipe import TINY as VOC_TINY
from test_voc_recipe import _attnbench

import modules
from attnbench.report.stats import load_runs

REPO = Path(__file__).resolve().parents[2]
HEADS = set(modules.available()) - {"pool"}  # every head of the zoo but the control
# The VOC recipe test's tiny model and schedule; a (height, width) crop on top.
TINY = [*VOC_TINY, "data.crop_size=[16, 24]"]
# Per data set: tree builder, class count, and what makes the evaluation path non-trivial:
# Cityscapes in sliding windows that overlap; ADE20K resized to a short side of 16 (the
# labels stay 24x40, so predictions are scored after resizing back).
CASES = {
    "cityscapes": (make_cityscapes, 19, ["data.base_size=[40, 24]", "eval.mode=slide",
                                         "eval.window=[16, 16]", "eval.stride=[8, 12]"]),
    "ade20k": (make_ade, 150, ["data.base_size=[48, 16]"]),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(CASES))
def test_recipe_trains_and_evaluates_every_head_on_a_tiny_tree(tmp_path, dataset) -> None:
    make_tree, num_classes, extra = CASES[dataset]
    make_tree(tmp_path / "data")
    out = tmp_path / "results"
    args = ["run", str(REPO / f"experiments/{dataset}_heads.yaml"), "--output-dir", str(out)]
    for item in [f"data.root={tmp_path / 'data'}", *TINY, *extra]:
        args += ["--set", item]
    done = _attnbench(*args, "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs, _ = load_runs(out / f"{dataset}_heads" / "runs.csv")
    assert set(runs["head"]) == HEADS
    miou = runs[runs["metric"] == "mIoU"]
    assert len(miou) == len(HEADS) and miou["value"].between(0, 100).all()
    metrics = json.loads((out / f"{dataset}_heads/runs/ema/seed0/metrics.json").read_text())
    assert metrics["iterations"] == 2 and len(metrics["iou"]) == num_classes
    assert metrics["cost_image_size"] == [16, 24]  # the (height, width) crop
    assert metrics["eval"]["mode"] == ("slide" if dataset == "cityscapes" else "whole")


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_recipe_without_data_stops_at_once_with_the_layout(tmp_path, dataset) -> None:
    recipe = str(REPO / f"experiments/{dataset}_heads.yaml")
    done = _attnbench("run", recipe, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    expected = (
        "leftImg8bit_trainvaltest.zip" if dataset == "cityscapes" else "ADEChallengeData2016.zip"
    )
    assert "data.root" in done.stderr and expected in done.stderr
    assert f"python -m attnbench data {dataset} --root" in done.stderr
    assert not (tmp_path / "out").exists()
    # A root that exists but holds something else: the data set names what it expected.
    (tmp_path / "empty").mkdir()
    sets = ["--set", f"data.root={tmp_path / 'empty'}", "--set", "model.backbone.pretrained=null"]
    done = _attnbench("run", recipe, *sets, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert expected in done.stderr and not (tmp_path / "out").exists()


def test_a_corrupt_file_met_in_a_loader_worker_is_named_on_one_line(tmp_path) -> None:
    make_cityscapes(tmp_path / "data")
    images = sorted((tmp_path / "data" / "leftImg8bit" / "train").glob("*/*.png"))
    images[-1].write_bytes(images[-1].read_bytes()[:60])  # truncated, read by a worker only
    sets = [f"data.root={tmp_path / 'data'}", *TINY, "data.num_workers=2", "train.batch_size=4"]
    args = ["run", str(REPO / "experiments/cityscapes_heads.yaml"), "--heads", "none"]
    for item in sets:
        args += ["--set", item]
    done = _attnbench(*args, "--output-dir", str(tmp_path / "out"), "--no-report", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"unreadable image {images[-1]}" in done.stderr and "Traceback" not in done.stderr
