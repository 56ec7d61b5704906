"""A run folder written by an older version of the code still belongs to the same config."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.experiment.config import ConfigError, dump_config, load_config
from attnbench.experiment.plan import plan_runs, run_config

YAML = """\
name: old
seeds: [0]
data: {{dataset: synthetic, image_size: 32, train_size: 8, val_size: 2}}
model: {{backbone: {{depth: 18, width: 8}}, head: {{channels: 16}}}}
train: {{iterations: 2, batch_size: 2, lr: {lr}}}
heads:
  - {{name: base, module: none}}
output_dir: {out}
"""


def _folder_of_an_older_version(tmp_path: Path, lr: float) -> Path:
    """The run's config.yaml as the code before (h, w) crops wrote it."""
    path = tmp_path / "exp.yaml"
    path.write_text(YAML.format(lr=lr, out=tmp_path / "results"))
    cfg = load_config(path)
    text = dump_config(run_config(cfg, cfg.heads[0], 0))
    assert "crop_size:\n  - 512\n" in text and "cat_max_ratio: 1.0\n" in text
    old = text.replace("crop_size:\n  - 512\n", "crop_size: 512\n")
    old = old.replace("  cat_max_ratio: 1.0\n", "")  # a key added since, at its default
    folder = tmp_path / "results" / "old" / "runs" / "base" / "seed0"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("# run base seed 0 of experiment old\n" + old)
    (folder / "metrics.json").write_text('{"status": "finished"}')
    return path


def test_an_older_spelling_of_the_same_config_is_accepted(tmp_path: Path) -> None:
    path = _folder_of_an_older_version(tmp_path, lr=0.01)
    planned = plan_runs(load_config(path), None)
    assert [p.status for p in planned] == ["new"]  # recorded, no checkpoint: trained again


def test_a_real_difference_is_still_refused(tmp_path: Path) -> None:
    path = _folder_of_an_older_version(tmp_path, lr=0.01)
    changed = load_config(path, ["train.lr=0.02"])
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.01 there, 0\.02 now"):
        plan_runs(changed, None)
