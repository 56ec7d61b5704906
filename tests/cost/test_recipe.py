"""`python -m attnbench cost` in a tiny mode: files named after the device, ratios, refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.cli import main
from attnbench.cost import recipe
from attnbench.cost.published import BASELINES, CITYSCAPES, PUBLISHED, published_ratios

TINY = [
    "--set", "model.backbone.width=8",
    "--set", "model.head.channels=16",
    "--set", "data.crop_size=32",
    "--set", "train.batch_size=2",
    "--set", "train.threads=1",
]  # fmt: skip


@pytest.mark.slow
def test_tiny_cost_table_has_every_figure_and_mmseg_ratios(tmp_path: Path) -> None:
    argv = ["cost", *TINY, "--depths", "18", "--heads", "none,ema", "--device", "cpu"]
    argv += ["--out", str(tmp_path), "--warmup", "1", "--windows", "2", "--steps", "1"]
    assert main(argv) == 0
    stem = f"voc_heads_{recipe.device_slug(torch.device('cpu'))}"
    assert stem.startswith("voc_heads_cpu_")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.csv", f"{stem}.md"]
    rows = pd.read_csv(tmp_path / f"{stem}.csv")
    wide = rows.pivot_table(index="head", columns="metric", values="value")
    for metric in ("train_mem_gb", "train_img_s", "infer_img_s", "infer_b1_img_s"):
        assert (wide[metric] > 0).all(), metric
    assert set(rows["batch"]) == {2} and set(rows["crop"]) == {"32x32"}
    text = (tmp_path / f"{stem}.md").read_text()
    assert "absolute Mem and fps do not compare" in text
    ema = next(line for line in text.splitlines() if line.startswith("| ema |"))
    # mmseg EMANet R-18 has no row: the published cells stay empty
    assert ema.rstrip(" |").endswith("–")


def test_published_ratios_use_fcn_of_the_same_setting() -> None:
    row, mem, fps = published_ratios("ema", 50)
    assert row.setting == CITYSCAPES and "configs/emanet/README.md" in row.cite
    assert mem == pytest.approx(5.4 / 5.7) and fps == pytest.approx(4.58 / 4.17)
    assert published_ratios("none", 101)[1:] == (1.0, 1.0)
    assert published_ratios("a2", 50) is None  # mmseg has no A2Net row
    assert all((r.setting, d) in BASELINES for (_, d), r in PUBLISHED.items())


def test_changed_recipe_must_name_its_output(tmp_path: Path, capsys) -> None:
    assert main(["cost", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err


def test_a_gpu_table_is_named_apart_from_the_cpu_one(monkeypatch) -> None:
    cpu = recipe.device_slug(torch.device("cpu"))
    monkeypatch.setattr(recipe.env, "device_name", lambda d: "NVIDIA H100 80GB HBM3")
    assert recipe.device_slug(torch.device("cuda")) == "cuda_nvidia-h100-80gb-hbm3" != cpu
