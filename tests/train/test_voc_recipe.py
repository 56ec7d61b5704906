"""experiments/voc_heads.yaml end to end on a tiny generated VOC + SBD tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_voc import SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL, make_sbd, make_voc

import modules
from attnbench.data.voc import build_trainaug
from attnbench.report.stats import load_runs

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "experiments" / "voc_heads.yaml"
TINY = [
    "model.backbone.pretrained=null",
    "model.backbone.depth=18",
    "model.backbone.width=8",
    "model.head.channels=16",
    "data.crop_size=24",
    "data.num_workers=0",
    "train.iterations=2",
    "train.batch_size=2",
    "train.eval_interval=0",
    "train.checkpoint_interval=1",
    "train.threads=1",
    "train.device=cpu",  # a tiny run: the same on any machine
]


def _attnbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # This checkout first, then whatever the caller had on the path (where the
    # dependencies may live: the GPU machine carries fvcore there).
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "attnbench", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_recipe_trains_and_evaluates_every_head_on_a_tiny_voc(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "voc", VOC_TRAIN, VOC_VAL)
    build_trainaug(voc, make_sbd(tmp_path / "voc", SBD_TRAIN, SBD_VAL), progress=False)
    out = tmp_path / "results"
    sets = [f"data.root={tmp_path / 'voc'}", *TINY]
    args = ["run", str(RECIPE), "--output-dir", str(out), "--no-report"]
    for item in sets:
        args += ["--set", item]
    done = _attnbench(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs, text = load_runs(out / "voc_heads" / "runs.csv")
    heads = set(modules.available()) - {"pool"}  # every head of the zoo but the control
    assert set(runs["head"]) == heads
    miou = runs[runs["metric"] == "mIoU"]
    assert len(miou) == len(heads) and miou["value"].between(0, 100).all()
    sizes = text[text["metric"] == "cost_image_size"]
    assert len(sizes) == len(heads) and set(sizes["value"]) == {"24x24"}  # the crop size
    metrics = json.loads((out / "voc_heads/runs/ema/seed0/metrics.json").read_text())
    assert metrics["iterations"] == 2 and len(metrics["iou"]) == 21


def test_recipe_without_voc_stops_with_the_layout_and_download_command(tmp_path: Path) -> None:
    done = _attnbench("run", str(RECIPE), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert "data.root" in done.stderr and "python -m attnbench data voc --root" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
