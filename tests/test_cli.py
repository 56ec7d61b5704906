"""`attnbench run` with bad input: one line naming the key, exit code 2, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnbench.cli import main

GOOD = """\
name: bad-input
data: {{dataset: synthetic, image_size: 32, train_size: 8, val_size: 2}}
model: {{backbone: {{depth: 18, width: 8}}, head: {{channels: 16}}}}
train: {{iterations: 2, batch_size: 2}}
heads:
  - {{name: base, module: none}}
  - {{name: nl, module: nonlocal, params: {{reduction: 2}}}}
output_dir: {out}
"""


@pytest.fixture
def good_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.format(out=tmp_path / "out"))
    return path


CASES = {
    "unknown key": (["--set", "train.speed=3"], "train.speed: unknown key"),
    "wrong type": (["--set", "train.lr=fast"], "train.lr: expected float"),
    "unknown module": (["--set", "heads.1.module=transformer"], "heads.1.module: unknown module"),
    "unknown hyper-parameter": (["--set", "heads.1.params.heads=4"], "heads.1.params.heads"),
    "unknown head": (["--heads", "base,ema"], "--heads: no head named 'ema'"),
    "missing checkpoint": (
        ["--set", "model.backbone.pretrained=/no/such/file.pt"],
        "model.backbone.pretrained: no such checkpoint file",
    ),
    "missing dataset": (
        ["--set", "data.dataset=voc", "--set", "data.root=/no/such/voc"],
        "data.root",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, good_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = CASES[case]
    assert main(["run", str(good_yaml), *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("attnbench run: error: ") and expected in lines[0]
    assert str(good_yaml) in lines[0]
    assert not (good_yaml.parent / "out").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seeds=[0,1", "--set 'seeds=[0,1': the value '[0,1' is not valid YAML at column 5"),
        ("train.lr={a: 1", "--set 'train.lr={a: 1': the value '{a: 1' is not valid YAML"),
    ],
)
def test_unparsable_set_value_is_one_line_exit_2(
    override: str, expected: str, good_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(good_yaml), "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(f"attnbench run: error: {good_yaml}: {expected}")
    assert not (good_yaml.parent / "out").exists()


def test_bad_yaml_key_in_the_file(good_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_yaml.write_text(good_yaml.read_text().replace("iterations: 2", "iteration: 2"))
    assert main(["run", str(good_yaml)]) == 2
    assert "train.iteration: unknown key" in capsys.readouterr().err
    assert not (good_yaml.parent / "out").exists()


def test_cuda_asked_without_cuda(
    good_yaml: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    assert main(["run", str(good_yaml), "--set", "train.device=cuda"]) == 2
    assert "train.device" in capsys.readouterr().err
    assert not (good_yaml.parent / "out").exists()


def test_missing_config_file_through_the_entry_point(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "attnbench", "run", str(missing)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"attnbench run: error: {missing}: no such config file"
    assert list(tmp_path.iterdir()) == []


def test_everything_missing_for_a_recipe_is_listed_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = Path(__file__).resolve().parents[1] / "experiments" / "voc_heads.yaml"
    sets = ["--set", f"data.root={tmp_path / 'voc'}", "--set", f"output_dir={tmp_path / 'out'}"]
    sets += ["--set", f"model.backbone.pretrained={tmp_path / 'resnet50-0676ba61.pth'}"]
    assert main(["run", str(recipe), *sets]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "2 things are missing" in line
    assert "(1) data.root: no VOC data" in line and "python -m attnbench data voc --root" in line
    assert "(2) model.backbone.pretrained: no such checkpoint file" in line
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in line
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_the_plan_of_a_recipe_without_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = Path(__file__).resolve().parents[1] / "experiments" / "voc_heads.yaml"
    sets = ["--set", f"data.root={tmp_path / 'voc'}", "--set", f"output_dir={tmp_path / 'out'}"]
    assert main(["run", str(recipe), "--dry-run", *sets]) == 0
    plan = capsys.readouterr().out
    assert "experiment voc_heads: 18 run(s), 18 to train" in plan
    assert "images not counted (no voc data at" in plan
    assert re.search(r"^ema +ema +0 +new", plan, re.MULTILINE)
    assert not (tmp_path / "out").exists()
